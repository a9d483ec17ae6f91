"""The virtual air: bumble controllers for BlueZ's adapter and for each virtual band.

One bumble `Controller` is BlueZ's: its HCI goes to the guest kernel's /dev/vhci (over a
virtio serial port and guest/hci-relay.py), so bluetoothd sees an ordinary `hci0`. Every
virtual band gets its own controller on the same link, a bumble `Device` that
advertises the band's name, and a GATT server built from the band's service table. The
bands are the fake BlueZ's own (`fakebluez.movesense`, `fakebluez.bands`): the same
objects answer the same GSP and PMD commands and stream the same frames, driven by the
simulated clonus band; only the radio under them is different.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.core import PhysicalTransport
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import Transport, open_transport
from bumble.transport.common import AsyncPipeSink
from fakebluez.bluez import Peripheral

log = logging.getLogger("vm.air")

ADAPTER_ADDRESS = "00:1B:DC:0C:10:01"  # BlueZ's hci0 (public)

_PROPS = {
    "read": Characteristic.Properties.READ,
    "write": Characteristic.Properties.WRITE,
    "write-without-response": Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
    "notify": Characteristic.Properties.NOTIFY,
    "indicate": Characteristic.Properties.INDICATE,
}


class RoutedLink(LocalLink):
    """bumble's LocalLink, with LE data sent from the address the sender's connection
    uses. The stock link always sends from the controller's random address, so a device
    on a public address (a real band's, or BlueZ's adapter's) never gets its data."""

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: PhysicalTransport,
        data: bytes,
    ) -> None:
        if transport != PhysicalTransport.LE:
            return super().send_acl_data(sender_controller, destination_address, transport, data)
        connection = sender_controller.le_connections.get(destination_address)
        if connection is None:
            return None
        source = connection.self_address
        receiver = self.find_le_controller(destination_address)
        if receiver is not None:
            asyncio.get_running_loop().call_soon(receiver.on_link_acl_data, source, transport, data)
        return None


def advertising_data(name: str) -> bytes:
    """Flags (LE general discoverable, no BR/EDR) and the complete local name: what a band
    puts in its 31 legacy bytes."""
    raw = name.encode()
    if len(raw) > 31 - 3 - 2:
        raise ValueError(f"name {name!r} does not fit a legacy advertisement")
    return bytes([2, 0x01, 0x06, len(raw) + 1, 0x09]) + raw


class BumbleLink:
    """What a connected band notifies through, as the fake BlueZ's `Link` is: over ATT.

    Notifications and indications leave in the order the band sent them; an indication
    waits for its confirmation before the next packet goes."""

    def __init__(self, band: BumbleBand, connection: Connection) -> None:
        self.band = band
        self.connection = connection
        self.notifications = 0
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._send())

    def notify(self, uuid: str, data: bytes) -> None:
        self._queue.put_nowait((uuid, bytes(data)))

    async def _send(self) -> None:
        device = self.band.device
        while True:
            uuid, data = await self._queue.get()
            char = self.band.chars[uuid]
            try:
                if char.properties & Characteristic.Properties.INDICATE:
                    await device.indicate_subscriber(self.connection, char, data)
                else:
                    await device.notify_subscriber(self.connection, char, data)
                self.notifications += 1
            except Exception as exc:  # the link went down meanwhile: what was queued is lost
                log.info("%s: notification not sent: %s", self.band.peripheral.name, exc)

    def close(self) -> None:
        self._task.cancel()


class BumbleBand:
    """One virtual band (a fake-BlueZ `Peripheral`) on its own bumble controller."""

    def __init__(self, peripheral: Peripheral, link: RoutedLink) -> None:
        self.peripheral = peripheral
        self.address = peripheral.address
        self.controller = Controller(peripheral.name, link=link, public_address=peripheral.address)
        host = Host(self.controller, AsyncPipeSink(self.controller))
        self.device = Device(name=peripheral.name, address=hci.Address(self.address), host=host)
        self.device.gatt_server.max_mtu = peripheral.mtu
        self.chars: dict[str, Characteristic[bytes]] = {}
        self.connection: Connection | None = None
        self.link: BumbleLink | None = None
        self.connects = 0
        for svc in peripheral.services:
            chars = [self._char(c.uuid, c.flags) for c in svc.chars]
            self.device.add_service(Service(svc.uuid, chars))
        self.device.on(self.device.EVENT_CONNECTION, self._on_connection)
        self.device.on("characteristic_subscription", self._on_subscription)

    def _char(self, uuid: str, flags: list[str]) -> Characteristic[bytes]:
        props = Characteristic.Properties(0)
        for f in flags:
            props |= _PROPS[f]

        def read(_conn: Connection) -> bytes:
            return self.peripheral.read(uuid)

        def write(_conn: Connection, value: bytes) -> None:
            self.peripheral.on_write(uuid, bytes(value))

        char: Characteristic[bytes] = Characteristic(
            uuid,
            props,
            Characteristic.Permissions.READABLE | Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(read=read, write=write),
        )
        self.chars[uuid] = char
        return char

    async def start(self) -> None:
        await self.device.power_on()
        await self.advertise()

    async def advertise(self) -> None:
        self.peripheral.advertising = True
        await self.device.start_advertising(
            own_address_type=hci.OwnAddressType.PUBLIC,
            advertising_data=advertising_data(self.peripheral.name),
            scan_response_data=b"",
            advertising_interval_min=100,
            advertising_interval_max=100,
        )

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self.connects += 1
        self.link = BumbleLink(self, connection)
        self.peripheral.on_connect(self.link)  # type: ignore[arg-type]
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)

    def _on_disconnection(self, _reason: Any) -> None:
        if self.link is not None:
            self.link.close()
        self.connection, self.link = None, None
        self.peripheral.on_disconnect()
        if self.peripheral.advertising:
            asyncio.get_running_loop().create_task(self.advertise())

    def _on_subscription(
        self, _bearer: Any, char: Characteristic[bytes], notify: bool, indicate: bool
    ) -> None:
        # BlueZ also subscribes to GATT's own Service Changed, which is not the band's.
        for uuid, c in self.chars.items():
            if c is char:
                self.peripheral.on_notify(uuid, notify or indicate)

    async def drop(self, reason: int = hci.HCI_CONNECTION_TIMEOUT_ERROR) -> None:
        """The band goes out of range: the link is lost and it is not heard any more."""
        self.peripheral.advertising = False
        await self.device.stop_advertising()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect(reason)


class Air:
    """The virtual air: BlueZ's controller (its HCI reaches the guest kernel through
    `transport`) plus one controller per band."""

    def __init__(self) -> None:
        self.link = RoutedLink()
        self.bands: list[BumbleBand] = []
        self._transport: Transport | None = None

    async def open(self, transport: str) -> None:
        self._transport = await open_transport(transport)
        Controller(
            "hci0",
            host_source=self._transport.source,
            host_sink=self._transport.sink,
            link=self.link,
            public_address=ADAPTER_ADDRESS,
        )

    async def add(self, peripheral: Peripheral) -> BumbleBand:
        band = BumbleBand(peripheral, self.link)
        await band.start()
        self.bands.append(band)
        return band

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()


def advertiser(name: str, address: str) -> Peripheral:
    """A device that only advertises its name (nobody connects to it)."""
    p = Peripheral()
    p.name, p.address = name, address
    return p
