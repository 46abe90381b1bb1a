"""gRPC plumbing shared by hub and clients: channels, mutual TLS, health checks, several hubs and failing over."""
