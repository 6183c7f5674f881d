#!/usr/bin/env bash
# Builds the real servers the tests run against, from the Go module proxy, into
# $SPARTAKUS_TESTENV_BIN (default: $CARGO_TARGET_DIR/testenv-bin, else target/testenv-bin).
# Idempotent: a binary whose stamp (version + go.sum hash + Go version) matches is skipped.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${SPARTAKUS_TESTENV_BIN:-${CARGO_TARGET_DIR:-$root/target}/testenv-bin}"
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

KUBE_VERSION=v1.37.2
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=37 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

# Keep in step with testenv/helm/go.mod (helm.sh/helm/v4).
HELM_VERSION=v4.3.2

gover="$(go env GOVERSION)"

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-"-s -w"}
  local version stamp
  version="$(cd "$dir" && go list -m -f '{{.Version}}' "$(cd "$dir" && go list -f '{{.Module.Path}}' "$pkg")")"
  stamp="$name $version $gover $(sha256sum "$dir/go.sum" | cut -c1-16) $(echo "$ldflags" | sha256sum | cut -c1-8)"
  if [[ -x "$out/$name" && -f "$out/$name.stamp" && "$(cat "$out/$name.stamp")" == "$stamp" ]]; then
    echo "testenv: $name $version up to date"
    return
  fi
  local t0=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "$stamp" >"$out/$name.stamp"
  echo "testenv: built $name $version in $((SECONDS - t0))s"
}

# The Prometheus Operator's PrometheusRule CRD, from the operator's module (only its YAML is
# used: k8s/monitoring is applied against it on the test kube-apiserver).
PROMETHEUS_OPERATOR_VERSION=v0.85.0
crd() {
  local file=monitoring.coreos.com_prometheusrules.yaml
  local stamp="prometheus-operator $PROMETHEUS_OPERATOR_VERSION"
  if [[ -f "$out/$file" && -f "$out/$file.stamp" && "$(cat "$out/$file.stamp")" == "$stamp" ]]; then
    echo "testenv: $file $PROMETHEUS_OPERATOR_VERSION up to date"
    return
  fi
  local dir
  dir="$(cd "$(mktemp -d)" && GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  cp "$dir/example/prometheus-operator-crd/$file" "$out/$file.tmp"
  mv "$out/$file.tmp" "$out/$file"
  echo "$stamp" >"$out/$file.stamp"
  echo "testenv: copied $file $PROMETHEUS_OPERATOR_VERSION"
}

want="${*:-nats-server etcd kube-apiserver bigquery-emulator rulecheck prometheusrule-crd helm}"
for name in $want; do
  case $name in
    # Its own module: testenv/nats/go.mod is the one place the version is named.
    nats-server) build nats-server "$here/nats" github.com/nats-io/nats-server/v2 ;;
    etcd) build etcd "$here" go.etcd.io/etcd/server/v3 ;;
    kube-apiserver) build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags" ;;
    # The emulator peaks near 6 GiB while linking: never build it beside kube-apiserver.
    bigquery-emulator) build bigquery-emulator "$here/bigquery" github.com/goccy/bigquery-emulator/cmd/bigquery-emulator ;;
    # Checks k8s/monitoring's alerting rules with Prometheus's own rule loader.
    rulecheck) build rulecheck "$here/rules" . ;;
    prometheusrule-crd) crd ;;
    # The chart in k8s/helm is linted, rendered and installed with the real helm.
    helm) build helm "$here/helm" helm.sh/helm/v4/cmd/helm "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;
    *) echo "testenv: unknown server $name" >&2; exit 2 ;;
  esac
done
echo "testenv: binaries in $out"
