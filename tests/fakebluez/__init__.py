"""A fake bluetoothd on a private D-Bus, so the daemon runs unchanged on bleak's BlueZ backend.

Only what bleak 3.1 uses is emulated (shared/research/testing_bleak_against_a_fake_bluez.md):
ObjectManager, Adapter1 discovery, Device1 connect/disconnect with BlueZ's signal order,
GattService1/GattCharacteristic1/GattDescriptor1 with StartNotify and WriteValue.
Peripherals (virtual bands) speak their real byte protocols on top.
"""
