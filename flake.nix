{
  description = "Spartakus: anonymous Kubernetes cluster reports, collected through NATS JetStream into BigQuery";

  # flake.lock pins a nixos-26.05 commit and crane v0.23.4. It was assembled
  # offline from published revisions and hashes; the first `nix flake lock` on a
  # networked machine must show no diff (.ci/nix-check checks its shape only).
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane/v0.23.4";
  };

  # Thin on purpose: Cargo.toml and Cargo.lock stay the source of truth, the
  # build lives in nix/package.nix, the images in nix/images.nix.
  outputs =
    {
      self,
      nixpkgs,
      crane,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      spartakus = forAllSystems (
        _system: pkgs:
        import ./nix/package.nix {
          inherit pkgs;
          craneLib = crane.mkLib pkgs;
        }
      );
    in
    {
      packages = forAllSystems (
        system: pkgs:
        let
          inherit (spartakus.${system})
            volunteer
            gateway
            ingester
            stats
            ;
        in
        {
          inherit
            volunteer
            gateway
            ingester
            stats
            ;
          # The release testenv/nats/go.mod names (the tests' server), not nixpkgs'.
          nats-server = import ./nix/nats-server.nix { inherit pkgs; };
          default = pkgs.symlinkJoin {
            name = "spartakus-${volunteer.version}";
            paths = [
              volunteer
              gateway
              ingester
              stats
            ];
            meta.mainProgram = "volunteer";
          };
        }
        // import ./nix/images.nix {
          inherit
            pkgs
            volunteer
            gateway
            ingester
            stats
            ;
        }
      );

      apps = forAllSystems (
        system: _pkgs:
        let
          volunteer = {
            type = "app";
            program = "${self.packages.${system}.volunteer}/bin/volunteer";
            meta.description = "Generate an anonymous cluster report (try --dry-run)";
          };
        in
        {
          inherit volunteer;
          default = volunteer;
        }
      );

      # `nix flake check` builds all of these. Only the pure unit tests run here:
      # the integration tests need the real servers that testenv/build.sh fetches
      # from the Go module proxy, which the build sandbox cannot reach, so they
      # run in .ci/run instead.
      checks = forAllSystems (
        system: _pkgs:
        let
          s = spartakus.${system};
        in
        {
          inherit (s)
            volunteer
            gateway
            ingester
            stats
            fmt
            clippy
            unit-tests
            ;
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          # crane's devShell brings cargo, rustc, clippy and rustfmt from the same
          # nixpkgs toolchain the packages use, plus the checks' build inputs.
          default = spartakus.${system}.craneLib.devShell {
            checks = self.checks.${system};
            packages = [
              pkgs.cargo-nextest
              pkgs.rust-analyzer
              pkgs.go # testenv/build.sh builds kube-apiserver, etcd and the BigQuery emulator
              self.packages.${system}.nats-server # pinned: nix/nats-server.nix
              pkgs.sqlite
              pkgs.kubectl
              pkgs.openssl
              pkgs.chromium # the dashboard's browser test (systests/tests/it/dashboard.rs)
              pkgs.slowhttptest # the gateway's slow-request tests (gateway/tests/it/slow.rs)
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree);
    };
}
