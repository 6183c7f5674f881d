# The Rust build: one crane dependency build from Cargo.lock, shared by the
# four binaries and by the checks. Cargo stays the source of truth for
# versions, features and lints; nothing here repeats them.
{ pkgs, craneLib }:
let
  inherit (pkgs) lib;

  workspace = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).workspace.package;

  # rust-toolchain.toml pins 1.95.0 for rustup users. Here the compiler is
  # nixpkgs' own (no extra overlay input), so the lock pins it indirectly: say
  # so loudly at evaluation time rather than let cargo fail deep in the build.
  toolchainOk = lib.versionAtLeast pkgs.rustc.version workspace.rust-version;
  toolchainMessage = ''
    spartakus: nixpkgs' rustc ${pkgs.rustc.version} is older than the workspace's
    rust-version ${workspace.rust-version} (rust-toolchain.toml pins the channel).
    Update the nixpkgs input (`nix flake update nixpkgs`), or give crane a pinned
    toolchain with `craneLib.overrideToolchain`.
  '';

  # Cargo sources, plus what the crates may read at compile or test time
  # (golden JSON, the stored tables' schemas and the statistics' SQL, the
  # OpenAPI document, the dashboard's stylesheet, READMEs, SCHEMA.md and the
  # manual in docs/ pulled in with include_str!, proptest regression seeds, which
  # proptest keeps beside their tests as `<test>.proptest-regressions`). Deployment files, Nix and Go stay out so that
  # editing them does not rebuild the binaries.
  root = toString ../.;
  outside = map (dir: "${root}/${dir}") [
    ".ci"
    ".git"
    "k8s"
    "nix"
    "target"
  ];
  src = lib.cleanSourceWith {
    name = "spartakus-source";
    src = ../.;
    filter =
      path: type:
      !builtins.elem (toString path) outside
      && (
        craneLib.filterCargoSources path type
        || lib.hasSuffix ".json" path
        || lib.hasSuffix ".sql" path
        || lib.hasSuffix ".css" path
        || lib.hasSuffix "/openapi.yaml" path
        || lib.hasSuffix "/README.md" path
        || lib.hasSuffix "/SCHEMA.md" path
        || lib.hasInfix "/testdata/" path
        || lib.hasSuffix ".proptest-regressions" path
        || lib.hasInfix "/docs/" path && lib.hasSuffix ".md" path
      );
  };

  commonArgs = lib.throwIfNot toolchainOk toolchainMessage {
    inherit src;
    inherit (workspace) version;
    pname = "spartakus";
    strictDeps = true;
  };

  # Every dependency of every workspace member (dev-dependencies included, for
  # clippy --all-targets and the unit tests), compiled once.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  binary =
    name: description:
    craneLib.buildPackage (
      commonArgs
      // {
        inherit cargoArtifacts;
        pname = name;
        cargoExtraArgs = "--locked -p ${name}";
        # The dependency list goes into the binary (a `.dep-v0` section, read back by
        # `cargo audit bin`, `rust-audit-info`, syft or trivy). crane has no switch for
        # it in any of its sources we could read (nixpkgs' buildRustPackage has
        # `auditable`), so say it here: cargo finds `cargo-auditable` on the PATH.
        # Its rustc wrapper touches only workspace crates, so cargoArtifacts, built
        # with plain cargo, are reused as they are. .ci/run builds the same way and
        # checks the list against Cargo.lock (.ci/auditable-check).
        nativeBuildInputs = [ pkgs.buildPackages.cargo-auditable ];
        cargoBuildCommand = "cargo auditable build --release";
        # The crates' tests need real servers (see the unit-tests check below).
        doCheck = false;
        meta = {
          inherit description;
          mainProgram = name;
          license = lib.licenses.asl20;
          platforms = lib.platforms.linux;
        };
      }
    );
in
{
  inherit craneLib src;

  volunteer = binary "volunteer" "Generates an anonymous Kubernetes cluster report and sends it to a Spartakus gateway";
  gateway = binary "gateway" "Spartakus HTTP gateway: validates reports and publishes them to NATS JetStream";
  ingester = binary "ingester" "Spartakus ingester: consumes reports from JetStream into BigQuery or SQLite";
  stats = binary "stats" "Spartakus statistics: differentially private snapshots of the stored reports, published as files with a dashboard, and served read-only";

  fmt = craneLib.cargoFmt commonArgs;

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
    }
  );

  # Unit tests only (beside the code, pure by the house style). The integration
  # tests in */tests/ start nats-server, kube-apiserver, etcd and the BigQuery
  # emulator that testenv/build.sh compiles from the Go module proxy; the
  # sandbox has no network, so those run in .ci/run, not here.
  unit-tests = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "--locked --workspace --exclude testenv --lib --bins";
    }
  );
}
