"""Everything that speaks MQTT (the only package that imports aiomqtt)."""
