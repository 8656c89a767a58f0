"""The front door: who may call (client keys, browsers), what is counted, what is shown."""
