"""How events travel: the wire codec (`wire`), gRPC (`rpc`) and offline bundles over SFTP (`offline`)."""
