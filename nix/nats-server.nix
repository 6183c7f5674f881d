# nats-server at the release testenv/nats/go.mod names (the one place the
# version is named), built from the same Go module zip that testenv/build.sh
# builds the tests' server from and with the same dependency versions, so the
# dev shell runs what the tests run and what k8s/base/nats deploys. nixpkgs'
# own nats-server would be whatever release that nixpkgs commit carries.
#
# Evaluation fails if `version` here is not the one in testenv/nats/go.mod,
# and testenv/tests/it/pins.rs checks the same. Upgrading means new hashes:
# recompute both as below (or build once with lib.fakeHash and take the hash
# Nix reports), then `nix build .#nats-server` on a networked machine.
#
# Both hashes were computed offline with Nix 2.8 from the module in the Go
# module cache (`GOFLAGS= go mod download -json github.com/nats-io/nats-server/v2@v2.15.3`,
# checked by the Go checksum database: h1:IgHIKL4DYN9mEfwtPcdM39muvXG8v9FBADQn0f4Whs0=):
#
#   src (fetchzip, stripRoot = false: the zip's only top-level entry is
#   `github.com/`, so the tree is kept whole and modRoot points into it):
#     mkdir unpack && cd unpack
#     unzip -qq "$(go env GOMODCACHE)/cache/download/github.com/nats-io/nats-server/v2/@v/v2.15.3.zip"
#     nix hash path --type sha256 .
#       => sha256-nc++Sfp617HCRkGB82VkS5vwvMm2vbzfSBLSTOIUFs4=
#   (the module directory inside it hashes like the module cache's copy:
#   `nix hash path "$(go env GOMODCACHE)/github.com/nats-io/nats-server/v2@v2.15.3"`
#   => sha256-3k/UCl4hoc4QwHW9n2+k4AmdPlT9SJJlt0cmm1JJCAI=)
#
#   vendorHash (what buildGoModule's goModules derivation stores: the vendor/
#   directory that `go mod vendor` writes in modRoot):
#     cp -r unpack src && chmod -R u+w src
#     cd src/github.com/nats-io/nats-server/v2@v2.15.3
#     GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod vendor   # go 1.26.8
#     nix hash path --type sha256 vendor
#       => sha256-nMHz85wLPZAaEmyqSjQmna+ksdiXepb3zP2ZpXs0o6Q=
#   The same steps on v2.11.9 give sha256-ti2Y4ev8INMNudfwmPhmKGCManRj2cFTw6Fh7kkvDQc=,
#   the vendorHash of nixpkgs' own nats-server 2.11.9, so the method is the one
#   buildGoModule uses. (Its GitHub source hash differs from the module zip's:
#   the zip is not the repository tarball, hence fetchzip and not fetchFromGitHub.)
{ pkgs }:
let
  inherit (pkgs) lib;

  version = "2.15.3";
  module = "github.com/nats-io/nats-server/v2";

  goModLines = builtins.filter builtins.isString (
    builtins.split "\n" (builtins.readFile ../testenv/nats/go.mod)
  );
  pinned = builtins.concatMap (
    line:
    let
      m = builtins.match "[[:space:]]*${module} v([^ ]+)( // indirect)?" line;
    in
    if m == null then [ ] else [ (builtins.head m) ]
  ) goModLines;
  pinMessage = ''
    spartakus: nix/nats-server.nix builds nats-server ${version}, but testenv/nats/go.mod
    requires ${builtins.concatStringsSep ", " pinned}. Set `version` here to that release
    and recompute both hashes (see the comment at the top of nix/nats-server.nix).
  '';

  # The module's go.mod says `go 1.26.0`; buildGoModule runs with
  # GOTOOLCHAIN=local, so an older nixpkgs Go would fail deep in the build.
  goOk = lib.versionAtLeast pkgs.go.version "1.26";
  goMessage = ''
    spartakus: nats-server ${version} needs Go 1.26 or newer; nixpkgs has ${pkgs.go.version}.
    Update the nixpkgs input (`nix flake update nixpkgs`).
  '';
in
lib.throwIfNot (pinned == [ version ]) pinMessage (
  lib.throwIfNot goOk goMessage (
    pkgs.buildGoModule {
      pname = "nats-server";
      inherit version;

      src = pkgs.fetchzip {
        url = "https://proxy.golang.org/${module}/@v/v${version}.zip";
        stripRoot = false;
        hash = "sha256-nc++Sfp617HCRkGB82VkS5vwvMm2vbzfSBLSTOIUFs4=";
      };
      modRoot = "${module}@v${version}";
      vendorHash = "sha256-nMHz85wLPZAaEmyqSjQmna+ksdiXepb3zP2ZpXs0o6Q=";

      subPackages = [ "." ];
      # The server's own tests take tens of minutes; ours run against this release.
      doCheck = false;

      meta = {
        description = "NATS server with JetStream, at the release Spartakus pins";
        homepage = "https://nats.io/";
        changelog = "https://github.com/nats-io/nats-server/releases/tag/v${version}";
        license = lib.licenses.asl20;
        mainProgram = "nats-server";
      };
    }
  )
)
