"""The network: the localization service (WebSocket/TCP/UDP), its wire format and JSON Schema, the live
web page and the MQTT publisher."""
