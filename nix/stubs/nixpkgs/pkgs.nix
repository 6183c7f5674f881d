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
  go = stub "go-1.26.8" {
    pname = "go";
    version = "1.26.8";
  };
  kubectl = pkg "kubectl";
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

  # A fixed-output fetch: a real (SRI) hash, never lib.fakeHash's zeros.
  fetchzip =
    {
      url,
      hash,
      stripRoot ? true,
    }:
    assert check (builtins.match "https://.*[.]zip" url != null) "fetchzip needs an https URL of a zip";
    assert check (
      builtins.match "sha256-[A-Za-z0-9+/]{43}=" hash != null
      && hash != "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ) "fetchzip ${url}: hash must be a computed sha256 SRI hash";
    stub "source" { inherit url hash stripRoot; };

  buildGoModule =
    {
      pname,
      version,
      src,
      vendorHash,
      modRoot ? "./",
      subPackages ? [ ],
      doCheck ? true,
      meta ? { },
    }:
    assert check (
      vendorHash == null
      || builtins.match "sha256-[A-Za-z0-9+/]{43}=" vendorHash != null
      && vendorHash != "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ) "buildGoModule ${pname}: vendorHash must be a computed sha256 SRI hash (or null)";
    stub "${pname}-${version}" {
      inherit
        pname
        version
        src
        vendorHash
        modRoot
        subPackages
        doCheck
        meta
        ;
    };

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
