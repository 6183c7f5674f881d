{
  description = "Stand-in for nixpkgs: just enough to evaluate Spartakus' flake offline; builds nothing";

  outputs =
    { self }:
    {
      lib = import ./lib.nix;
      legacyPackages = self.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system:
        import ./pkgs.nix {
          inherit system;
          inherit (self) lib;
        }
      );
    };
}
