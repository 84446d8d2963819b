"""The local default runtime: moto's server on loopback standing in for AWS."""
