"""What every layer agrees on: the change SPI, record events, identifier checks."""
