# The few nixpkgs.lib functions Spartakus' Nix files use, with nixpkgs' semantics.
let
  hasSuffix =
    suffix: s:
    let
      ls = builtins.stringLength s;
      lx = builtins.stringLength suffix;
    in
    ls >= lx && builtins.substring (ls - lx) lx s == suffix;
in
{
  inherit hasSuffix;

  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );

  versionAtLeast = v1: v2: builtins.compareVersions v1 v2 >= 0;

  throwIfNot = cond: msg: if cond then x: x else throw msg;

  hasInfix = infix: s: builtins.match ".*${infix}.*" s != null;

  cleanSourceWith =
    {
      src,
      filter,
      name ? "source",
    }:
    builtins.path {
      path = src;
      inherit name filter;
    };

  licenses.asl20 = {
    spdxId = "Apache-2.0";
  };
  platforms.linux = [
    "x86_64-linux"
    "aarch64-linux"
  ];
}
