//! The fault-injecting proxy in front of kube-apiserver: unchanged answers without a fault, the
//! expired continue token's 410 when armed, and a record of what it saw.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use testenv::{KubeApi, KubeFault, KubeProxy, KubeRequest};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const NAMESPACES: &str = "/api/v1/namespaces";

fn request(continued: bool, gone: bool) -> KubeRequest {
    KubeRequest {
        path: NAMESPACES.to_owned(),
        continued,
        gone,
    }
}

#[tokio::test]
async fn the_proxy_forwards_unchanged_and_expires_one_continue_token_when_armed() -> TestResult {
    let kube = KubeApi::shared().await?;
    let proxy = KubeProxy::start(kube).await?;
    let direct: Api<Namespace> = Api::all(kube.client().await?);
    let proxied: Api<Namespace> = Api::all(proxy.client()?);
    assert_eq!(
        proxied.get("kube-system").await?.metadata.uid,
        direct.get("kube-system").await?.metadata.uid
    );

    // A bare API server has four namespaces: a list one at a time has later pages.
    proxy.arm(KubeFault::Once(NAMESPACES));
    let first = proxied.list(&ListParams::default().limit(1)).await?;
    let token = first.metadata.continue_.ok_or("no second page")?;
    let next = ListParams::default().limit(1).continue_token(&token);
    match proxied.list(&next).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("not a 410: {other:?}"),
    }
    // Once: the same token goes through the second time.
    let second = proxied.list(&next).await?;
    assert_eq!(second.items.len(), 1);
    assert_eq!(
        proxy.seen(),
        [
            request(false, false),
            request(true, true),
            request(true, false)
        ]
    );

    // Arming again forgets what was seen; `Always` expires every continued request.
    proxy.arm(KubeFault::Always(NAMESPACES));
    assert_eq!(proxy.seen(), []);
    for _ in 0..2 {
        assert!(proxied.list(&next).await.is_err());
    }
    assert_eq!(proxy.seen(), [request(true, true), request(true, true)]);
    Ok(())
}
