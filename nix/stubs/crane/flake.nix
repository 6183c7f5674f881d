{
  description = "Stand-in for crane: just enough to evaluate Spartakus' flake offline; builds nothing";

  outputs = _: {
    mkLib = pkgs: import ./lib.nix { inherit pkgs; };
  };
}
