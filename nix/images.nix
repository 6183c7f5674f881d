# OCI images, one per binary: the binary as entrypoint, CA certificates for
# TLS to the gateway and to BigQuery, a numeric non-root user, no shell, no
# package manager. Load with `docker load < result` (or `podman load`).
{
  pkgs,
  volunteer,
  gateway,
  ingester,
  stats,
}:
let
  # Matches runAsUser/runAsGroup in k8s/: the "nonroot" user of distroless.
  uid = "65532";

  # A passwd/group entry so that tools resolving the uid get a name; the shell
  # named there does not exist in the image.
  identity = [
    (pkgs.writeTextDir "etc/passwd" "nonroot:x:${uid}:${uid}:nonroot:/nonexistent:/sbin/nologin\n")
    (pkgs.writeTextDir "etc/group" "nonroot:x:${uid}:\n")
  ];

  image =
    package: ports:
    pkgs.dockerTools.buildLayeredImage {
      name = "spartakus-${package.pname}";
      tag = package.version;
      contents = [ pkgs.cacert ] ++ identity;
      config = {
        Entrypoint = [ "${package}/bin/${package.pname}" ];
        User = "${uid}:${uid}";
        Env = [ "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt" ];
        ExposedPorts = pkgs.lib.genAttrs ports (_: { });
        Labels = {
          "org.opencontainers.image.title" = "spartakus-${package.pname}";
          "org.opencontainers.image.version" = package.version;
          "org.opencontainers.image.licenses" = "Apache-2.0";
        };
      };
    };
in
{
  volunteer-image = image volunteer [ ];
  gateway-image = image gateway [ "8080/tcp" ];
  ingester-image = image ingester [ "9090/tcp" ];
  stats-image = image stats [ "8080/tcp" ];
}
