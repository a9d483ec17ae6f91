"""Where samples come from: one interface (`base`), and the simulated band, replayed
recordings and BLE bands (`ble/`) behind it. `factory.make_source` picks one."""
