# The crane functions Spartakus uses. Each asserts the arguments the real one
# needs for a virtual workspace and returns a derivation that cannot be built.
{ pkgs }:
let
  inherit (pkgs) lib;

  check = cond: msg: if cond then true else throw "nix/stubs/crane: ${msg}";

  stub =
    kind: args:
    assert check (args ? src) "${kind} needs src";
    derivation {
      name = "${args.pname or "crane"}-${kind}-${args.version or "0"}";
      inherit (pkgs) system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo 'nix/stubs/crane: ${kind} is a stand-in and cannot be built' >&2; exit 1"
      ];
    }
    // {
      # The source the real function would build from, so that .ci/nix-check can
      # check what the filter keeps.
      inherit (args) src;
      pname = args.pname or "crane";
      version = args.version or "0";
      meta = args.meta or { };
    };

  # A virtual workspace has no [package], so crane cannot guess these.
  named =
    kind: args:
    assert check (args ? pname && args ? version) "${kind} needs pname and version";
    stub kind args;

  # Everything that compiles should reuse the one dependency build.
  reusing =
    kind: args:
    assert check (args ? cargoArtifacts) "${kind} should reuse cargoArtifacts from buildDepsOnly";
    named kind args;
in
{
  # Same rule as crane's: directories, Rust sources, Cargo manifests and lock.
  filterCargoSources =
    path: type:
    let
      base = baseNameOf (toString path);
    in
    type == "directory"
    || lib.hasSuffix ".rs" base
    || lib.hasSuffix ".toml" base
    || base == "Cargo.lock";

  buildDepsOnly = named "deps";
  buildPackage =
    args:
    assert check (lib.hasInfix "-p ${args.pname}" (args.cargoExtraArgs or ""))
      "buildPackage ${args.pname} should select its crate with -p";
    # Release binaries carry their dependency list: `cargo auditable build`, with the
    # tool among the build inputs (crane has no switch of its own for it).
    assert check (builtins.match "cargo auditable build .*" (args.cargoBuildCommand or "") != null)
      "buildPackage ${args.pname} should build with `cargo auditable build`";
    assert check (builtins.any (p: (p.pname or "") == "cargo-auditable") (args.nativeBuildInputs or [ ]))
      "buildPackage ${args.pname} needs cargo-auditable in nativeBuildInputs";
    reusing "bin" args;
  cargoClippy = reusing "clippy";
  cargoNextest = reusing "nextest";
  cargoFmt = named "fmt";

  devShell =
    {
      checks ? { },
      packages ? [ ],
    }:
    pkgs.mkShell {
      inputsFrom = builtins.attrValues checks;
      inherit packages;
    };
}
