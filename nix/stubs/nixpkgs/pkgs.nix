# Stand-in packages: derivations that instantiate but refuse to build.
{ system, lib }:
let
  stub =
    name: attrs:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo 'nix/stubs: ${name} is a stand-in and cannot be built' >&2; exit 1"
      ];
    }
    // attrs;

  pkg = name: stub name { pname = name; };

  shells = [
    "bash"
    "busybox"
    "coreutils"
    "dash"
  ];

  check = cond: msg: if cond then true else throw "nix/stubs: ${msg}";
in
{
  inherit lib system;
  stdenv.hostPlatform.system = system;

  rustc = stub "rustc-1.95.0" { version = "1.95.0"; };

  buildPackages.cargo-auditable = pkg "cargo-auditable";
  cacert = pkg "cacert";
  cargo-nextest = pkg "cargo-nextest";
  chromium = pkg "chromium";
  go = pkg "go";
  kubectl = pkg "kubectl";
  nats-server = pkg "nats-server";
  nixfmt-tree = pkg "nixfmt-tree";
  openssl = pkg "openssl";
  rust-analyzer = pkg "rust-analyzer";
  sqlite = pkg "sqlite";

  writeTextDir = path: text: stub "textdir" { inherit path text; };

  symlinkJoin =
    {
      name,
      paths,
      meta ? { },
    }:
    stub name { inherit paths meta; };

  mkShell = args: stub "shell" { inherit args; };

  dockerTools.buildLayeredImage =
    {
      name,
      tag,
      contents ? [ ],
      config,
    }:
    assert check (config ? User && builtins.match "(0|root)(:.*)?" config.User == null)
      "image ${name} must run as a non-root user";
    assert check (
      builtins.length (config.Entrypoint or [ ]) > 0
    ) "image ${name} needs an Entrypoint";
    assert check (builtins.any (e: builtins.match "SSL_CERT_FILE=.*" e != null) (
      config.Env or [ ]
    )) "image ${name} must set SSL_CERT_FILE";
    assert check (!builtins.any (p: builtins.elem (p.pname or "") shells) contents)
      "image ${name} must not contain a shell";
    stub "${name}-${tag}.tar.gz" {
      imageName = name;
      imageTag = tag;
    };
}
