"""``doascope bench``: the measurements behind the README's figures (speed, accuracy, live cost,
service, tracking, batch, DNN, position mode) and the soak test."""
