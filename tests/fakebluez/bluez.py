"""The BlueZ objects bleak talks to, with BlueZ's method semantics and signal order."""

import asyncio
import contextlib
from dataclasses import dataclass, field

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

# D-Bus names and signatures are not Python's; dbus-fast reads the annotations at runtime.
# ruff: noqa: N802, F821, F722, UP037


@dataclass
class Char:
    uuid: str
    flags: list[str]
    value: bytes = b""


@dataclass
class Service:
    uuid: str
    chars: list[Char] = field(default_factory=list)


class Peripheral:
    """A virtual band: its advertisement, GATT table and behaviour."""

    name = "peripheral"
    address = "AA:BB:CC:DD:EE:01"
    services: "list[Service]"
    rssi = -60
    mtu = 247  # what BlueZ negotiated (it asks for 517; the band may offer less)

    def __init__(self) -> None:
        self.link: "Link | None" = None
        self.services = []
        self.advertising = True  # False: switched off or out of range

    def on_connect(self, link: "Link") -> None:
        self.link = link

    def on_disconnect(self) -> None:
        self.link = None

    def on_write(self, uuid: str, data: bytes) -> None:
        pass

    def on_notify(self, uuid: str, enabled: bool) -> None:
        """The central wrote the characteristic's CCCD (some bands start streaming then)."""

    def read(self, uuid: str) -> bytes:
        for s in self.services:
            for c in s.chars:
                if c.uuid == uuid:
                    return c.value
        raise KeyError(uuid)


class Link:
    """What a connected peripheral uses to notify its central."""

    def __init__(self, chars: "dict[str, GattCharacteristic]") -> None:
        self._chars = chars
        self.notifications = 0

    def notify(self, uuid: str, data: bytes) -> None:
        ch = self._chars[uuid]
        if ch.notifying:
            self.notifications += 1
            ch.emit_properties_changed({"Value": bytes(data)})


class Adapter(ServiceInterface):
    def __init__(self, bluez: "FakeBluez") -> None:
        super().__init__("org.bluez.Adapter1")
        self.bluez = bluez
        self.powered = True
        self.discovering = False

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return "00:11:22:33:44:55"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return "fakebluez"

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":
        return "fakebluez"

    @dbus_property()
    def Powered(self) -> "b":
        return self.powered

    @Powered.setter
    def Powered(self, value: "b") -> None:
        self.powered = value

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> "b":
        return self.discovering

    @dbus_property(access=PropertyAccess.READ)
    def Roles(self) -> "as":
        return ["central", "peripheral"]

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":
        return []

    @method()
    def SetDiscoveryFilter(self, properties: "a{sv}") -> None:
        pass

    @method()
    def GetDiscoveryFilters(self) -> "as":
        return ["UUIDs", "RSSI", "Transport", "DuplicateData"]

    @method()
    def StartDiscovery(self) -> None:
        if self.discovering:
            self.bluez.stats["discovery_in_progress"] += 1
            raise DBusError("org.bluez.Error.InProgress", "Operation already in progress")
        self.discovering = True
        self.emit_properties_changed({"Discovering": True})
        self.bluez.start_adverts()

    @method()
    def StopDiscovery(self) -> None:
        if not self.discovering:
            raise DBusError("org.bluez.Error.Failed", "No discovery started")
        self.discovering = False
        self.emit_properties_changed({"Discovering": False})
        self.bluez.stop_adverts()

    @method()
    def RemoveDevice(self, device: "o") -> None:
        self.bluez.remove_device(device)


class Device(ServiceInterface):
    def __init__(self, bluez: "FakeBluez", p: Peripheral, path: str) -> None:
        super().__init__("org.bluez.Device1")
        self.bluez, self.p, self.path = bluez, p, path
        self.connected = False
        self.resolved = False
        self.rssi = p.rssi
        self.trusted = False
        self.connecting = False
        self.fail_next: list[tuple[str, str]] = []

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return self.p.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":
        return "random"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return self.p.name

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":
        return self.p.name

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> "o":
        return "/org/bluez/hci0"

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> "n":
        return self.rssi

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":
        return [s.uuid for s in self.p.services]

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> "b":
        return self.connected

    @dbus_property(access=PropertyAccess.READ)
    def ServicesResolved(self) -> "b":
        return self.resolved

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> "b":
        return False

    @dbus_property()
    def Trusted(self) -> "b":
        return self.trusted

    @Trusted.setter
    def Trusted(self, value: "b") -> None:
        self.trusted = value

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> "a{qv}":
        return {}

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":
        return {}

    @method()
    async def Connect(self) -> None:
        self.bluez.connect_log.append((asyncio.get_running_loop().time(), self.p.address))
        if self.fail_next:
            error, text = self.fail_next.pop(0)
            if text == "le-connection-abort-by-local":
                # BlueZ >= 5.62: the link came up and was torn down before the reply.
                self.emit_properties_changed({"Connected": True})
                self.emit_properties_changed({"Connected": False})
            raise DBusError(error, text)
        if not self.p.advertising:
            await asyncio.sleep(2.0)  # page timeout: nobody answers
            raise DBusError("org.bluez.Error.Failed", "le-connection-abort-by-local")
        if self.connecting:
            raise DBusError("org.bluez.Error.InProgress", "In Progress")
        if self.connected:
            return
        self.bluez.stats["connects"] += 1
        self.connected = True
        self.emit_properties_changed({"Connected": True})
        # BlueZ order: the reply, then the GATT objects, then ServicesResolved.
        asyncio.get_running_loop().call_later(0.01, self.bluez.resolve, self)

    @method()
    def Disconnect(self) -> None:
        self.bluez.drop(self)


class GattService(ServiceInterface):
    def __init__(self, uuid: str, device: str) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid, self.device = uuid, device

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Device(self) -> "o":
        return self.device

    @dbus_property(access=PropertyAccess.READ)
    def Includes(self) -> "ao":
        return []


class GattCharacteristic(ServiceInterface):
    def __init__(self, bluez: "FakeBluez", p: Peripheral, ch: Char, service: str) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.bluez, self.p, self.ch, self.service = bluez, p, ch, service
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":
        return self.ch.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":
        return self.service

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":
        return self.ch.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> "b":
        return self.notifying

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":
        return self.ch.flags

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> "q":
        return self.p.mtu

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":
        return self.p.read(self.ch.uuid)

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}") -> None:
        self.bluez.stats["writes"] += 1
        self.p.on_write(self.ch.uuid, bytes(value))

    @method()
    def StartNotify(self) -> None:
        if self.notifying:
            return
        self.bluez.stats["notify_sessions"] += 1
        self.notifying = True
        self.emit_properties_changed({"Notifying": True})
        self.p.on_notify(self.ch.uuid, True)

    @method()
    def StopNotify(self) -> None:
        if self.notifying:
            self.bluez.stats["notify_sessions"] -= 1
            self.notifying = False
            self.emit_properties_changed({"Notifying": False})
            self.p.on_notify(self.ch.uuid, False)


class GattDescriptor(ServiceInterface):
    def __init__(self, uuid: str, characteristic: str) -> None:
        super().__init__("org.bluez.GattDescriptor1")
        self.uuid, self.characteristic = uuid, characteristic

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Characteristic(self) -> "o":
        return self.characteristic

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":
        return b""

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":
        return ["read", "write"]

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":
        return b"\x00\x00"

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}") -> None:
        raise DBusError("org.bluez.Error.NotPermitted", "Write not permitted")


class FakeBluez:
    """Owns org.bluez on the given bus address; peripherals are added with `add`."""

    def __init__(self) -> None:
        self.bus: MessageBus | None = None
        self.adapter = Adapter(self)
        self.devices: dict[str, Device] = {}
        self.exported: set[str] = set()
        self.gatt: dict[str, list[tuple[str, ServiceInterface]]] = {}
        self.stats = {"connects": 0, "writes": 0, "notify_sessions": 0, "discovery_in_progress": 0}
        self.connect_log: list[tuple[float, str]] = []  # (loop time, address) of each Connect
        self.advert_log: list[tuple[float, str]] = []  # when a band started advertising again
        self._advert_task: asyncio.Task[None] | None = None

    async def start(self, address: str) -> None:
        self.bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        self.bus.export("/org/bluez/hci0", self.adapter)
        await self.bus.request_name("org.bluez")

    async def crash(self) -> None:
        """bluetoothd dies: its bus name vanishes with no Connected=false for anyone, and
        the bands lose their links (their radios time the connection out)."""
        self.stop_adverts()
        for dev in self.devices.values():
            if dev.connected:
                dev.p.on_disconnect()
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    async def stop(self) -> None:
        self.stop_adverts()
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await self.bus.wait_for_disconnect()

    def add(self, p: Peripheral) -> str:
        path = "/org/bluez/hci0/dev_" + p.address.replace(":", "_")
        self.devices[path] = Device(self, p, path)
        return path

    def device(self, p: Peripheral) -> Device:
        return next(d for d in self.devices.values() if d.p is p)

    # -- advertising ---------------------------------------------------------------------

    def start_adverts(self) -> None:
        assert self.bus is not None
        for path, dev in self.devices.items():
            if path not in self.exported:
                self.bus.export(path, dev)
                self.exported.add(path)
        self._advert_task = asyncio.get_running_loop().create_task(self._adverts())

    def stop_adverts(self) -> None:
        if self._advert_task is not None:
            self._advert_task.cancel()
            self._advert_task = None

    async def _adverts(self) -> None:
        """Each advert re-reports RSSI (BlueZ invalidates it when discovery stops)."""
        flip = 0
        while True:
            flip ^= 1
            for dev in self.devices.values():
                if not dev.connected and dev.p.advertising:
                    dev.rssi = dev.p.rssi - flip
                    dev.emit_properties_changed({"RSSI": dev.rssi})
            await asyncio.sleep(0.05)

    def vanish(self, p: Peripheral) -> None:
        """The band goes out of range (or is switched off): link lost, no adverts."""
        p.advertising = False
        self.drop(self.device(p))

    def reappear(self, p: Peripheral) -> None:
        self.advert_log.append((asyncio.get_running_loop().time(), p.address))
        p.advertising = True

    def remove_device(self, path: str) -> None:
        if path in self.exported and self.bus is not None:
            self.bus.unexport(path)
            self.exported.discard(path)

    # -- connections ---------------------------------------------------------------------

    def resolve(self, dev: Device) -> None:
        assert self.bus is not None
        if not dev.connected:
            return
        if dev.path not in self.gatt:
            objs: list[tuple[str, ServiceInterface]] = []
            chars: dict[str, GattCharacteristic] = {}
            handle = 0x000A
            for s in dev.p.services:
                spath = f"{dev.path}/service{handle:04x}"
                objs.append((spath, GattService(s.uuid, dev.path)))
                handle += 1
                for c in s.chars:
                    cpath = f"{spath}/char{handle:04x}"
                    gc = GattCharacteristic(self, dev.p, c, spath)
                    objs.append((cpath, gc))
                    chars[c.uuid] = gc
                    handle += 1
                    if "notify" in c.flags or "indicate" in c.flags:
                        objs.append(
                            (
                                f"{cpath}/desc{handle:04x}",
                                GattDescriptor("00002902-0000-1000-8000-00805f9b34fb", cpath),
                            )
                        )
                        handle += 1
                    handle += 1
            self.gatt[dev.path] = objs
            dev.link_chars = chars  # type: ignore[attr-defined]
            for path, obj in objs:
                self.bus.export(path, obj)
        dev.p.on_connect(Link(dev.link_chars))  # type: ignore[attr-defined]
        dev.resolved = True
        dev.emit_properties_changed({"ServicesResolved": True})

    def drop(self, dev: Device) -> None:
        """Link loss or a requested disconnect: BlueZ's order, GATT objects kept (cache)."""
        if not dev.connected:
            return
        dev.p.on_disconnect()
        for gc in getattr(dev, "link_chars", {}).values():
            if gc.notifying:
                self.stats["notify_sessions"] -= 1  # BlueZ ends a link's notify sessions
            gc.notifying = False
        dev.resolved = False
        dev.emit_properties_changed({"ServicesResolved": False})
        dev.connected = False
        dev.emit_properties_changed({"Connected": False})
