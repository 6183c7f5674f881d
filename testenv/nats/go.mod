module spartakus.dev/testenv/nats

go 1.26.0

// The one place the nats-server version is named. testenv/build.sh builds it
// from here; k8s/base/nats (image tag), flake.nix (nix/nats-server.nix) and
// the docs follow it, and testenv/tests/it/pins.rs fails when one of them
// disagrees. Upgrading: `go get -tool github.com/nats-io/nats-server/v2@vX`,
// then the image tag, the Nix hashes (see nix/nats-server.nix) and the docs.
tool github.com/nats-io/nats-server/v2

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
