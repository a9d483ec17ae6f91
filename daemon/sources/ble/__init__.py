"""BLE bands through bleak: the link (`link`), one shared scanner (`scanner`), each band's
start/stop sequence (`profiles`) and its byte parsers (`bands`)."""
