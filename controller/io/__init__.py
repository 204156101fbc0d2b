"""The daemon's edges: storage, the rig socket, file transfers, logs, sd_notify, the websocket."""
