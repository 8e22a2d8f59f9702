//! A deleted Checkpoint, against the lab's REAL kube-apiserver v1.20.2, s3s-fs and docker-registry:
//! the finalizer holds the object until the operator deleted the S3 archives (and digest record)
//! and the registry manifests of its history and their signatures — except an image a Transition
//! recorded (Git may pin it) — then the object goes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use transition_crds::{Checkpoint, Transition};
use transition_operator::checkpoint;
use transition_operator::context::Context;
use transition_operator::image::build::PushedImage;
use transition_operator::image::lookaside::SignaturePath;
use transition_operator::image::signing::sign_pushed;
use transition_operator::k8s::crd_install::install_crds;
use transition_operator::observe::metrics::Metrics;
use transition_testlab::{Lab, fresh_namespace};

use crate::images_support::{
    GpgKey, archive_store, push_fixture, registry, s3_client, signature_store,
};

fn manifest_status(ep: &transition_testlab::RegistryEndpoint, reference: &str) -> u16 {
    let (name, digest) = reference.split_once('@').unwrap();
    let repo = name.split_once('/').unwrap().1;
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", "-u"])
        .arg(format!("{}:{}", ep.user, ep.password))
        .args([
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{}/v2/{repo}/manifests/{digest}", ep.host))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_checkpoint_takes_its_archives_and_images_with_it_but_keeps_a_deployed_image() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "cleanup").await.unwrap();
    let s3 = lab.s3().unwrap();
    let ep = lab.registry().unwrap();

    // Two records, as a history holds them: archive in S3 (with a digest record) + image.
    let run = format!("cleanup-{}", std::process::id());
    let keys: Vec<String> = (0..2)
        .map(|i| {
            format!("checkpoints/v1/cluster1-azure/{run}/checkpoint-counter_{ns}-counter-{i}.tar")
        })
        .collect();
    let sdk = s3_client(&s3);
    for key in &keys {
        for k in [key.clone(), format!("{key}.sha256.json")] {
            sdk.put_object()
                .bucket(&s3.bucket)
                .key(&k)
                .body(b"archive bytes".to_vec().into())
                .send()
                .await
                .unwrap();
        }
    }
    let reg = registry(&ep);
    let repo = format!("checkpoints/{ns}/counter-counter");
    let deployed_repo = format!("{repo}-deployed");
    let (old_image, deployed_image) = (
        push_fixture(&reg, &repo).await,
        push_fixture(&reg, &deployed_repo).await,
    );
    let (old, deployed) = (
        old_image.reference.clone(),
        deployed_image.reference.clone(),
    );
    assert_eq!(manifest_status(&ep, &old), 200);
    // Both images signed, as a run with --image-signing-key-file leaves them.
    let key = GpgKey::generate("transition-operator <ops@example.com>");
    let signatures = signature_store(&lab);
    for (image, r) in [(&old_image, &repo), (&deployed_image, &deployed_repo)] {
        sign_pushed(&key.secret_file, &signatures, image, r, 1_765_000_000)
            .await
            .unwrap();
    }
    let signature_of = |image: &PushedImage, r: &str, index: bool| {
        let digest = if index {
            &image.index_digest
        } else {
            &image.manifest_digest
        };
        SignaturePath::of(r, digest, 1).unwrap()
    };

    // The registry Secret the Checkpoint names, and a Transition that deployed `deployed`.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "registry-credentials"},
        "stringData": {"username": ep.user, "password": ep.password}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let transitions: Api<Transition> = Api::namespaced(client.clone(), &ns);
    let tr: Transition = serde_json::from_value(json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
        "metadata": {"name": "counter-policy-counter-1"},
        "spec": {"policyRef": {"name": "counter-policy"}, "package": "counter",
                 "sourceCluster": "cluster1-azure", "targetCluster": "cluster2-aws",
                 "trigger": {"type": "Planned"}}
    }))
    .unwrap();
    transitions
        .create(&PostParams::default(), &tr)
        .await
        .unwrap();
    let (image, digest) = deployed.split_once('@').unwrap();
    transitions
        .patch_status(
            "counter-policy-counter-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Completed",
                "images": [{"image": image, "digest": digest}]}})),
        )
        .await
        .unwrap();

    let checkpoints: Api<Checkpoint> = Api::namespaced(client.clone(), &ns);
    let c: Checkpoint = serde_json::from_value(json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
        "metadata": {"name": "c1", "finalizers": [checkpoint::FINALIZER]},
        "spec": {"schedule": "@manual", "clusterRef": {"name": "cluster1-azure", "packageName": "counter"},
                 "podRef": {"namespace": ns, "name": "counter-a",
                            "containerRef": {"containers": [{"name": "counter"}]}},
                 "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "counter"},
                 "registry": {"url": format!("http://{}", ep.host), "repository": "checkpoints",
                              "secretRef": {"name": "registry-credentials"}},
                 "containers": [{"name": "counter", "image": "docker.io/library/busybox:1.36"}]}
    }))
    .unwrap();
    checkpoints
        .create(&PostParams::default(), &c)
        .await
        .unwrap();
    let history = json!([
        {"time": "2026-12-01T10:00:00Z", "container": "counter", "archiveKey": keys[0], "image": old},
        {"time": "2026-12-01T10:01:00Z", "container": "counter", "archiveKey": keys[1], "image": deployed},
    ]);
    checkpoints
        .patch_status(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"history": history}})),
        )
        .await
        .unwrap();
    checkpoints
        .delete("c1", &DeleteParams::default())
        .await
        .unwrap();
    let held = checkpoints.get("c1").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the finalizer holds the deleted Checkpoint until the cleanup ran"
    );

    let ctx = Context::new(
        client.clone(),
        Arc::new(Metrics::default()),
        Duration::from_secs(300),
    )
    .with_store(archive_store(&s3, Duration::from_secs(30)));
    checkpoint::reconcile(Arc::new(held), Arc::new(ctx))
        .await
        .unwrap();

    assert!(
        checkpoints.get_opt("c1").await.unwrap().is_none(),
        "the finalizer was removed and the Checkpoint is gone"
    );
    for key in &keys {
        for k in [key.clone(), format!("{key}.sha256.json")] {
            let head = sdk.head_object().bucket(&s3.bucket).key(&k).send().await;
            assert!(head.is_err(), "s3://{}/{k} was deleted", s3.bucket);
        }
    }
    assert_eq!(manifest_status(&ep, &old), 404, "the old image was deleted");
    assert_eq!(
        manifest_status(&ep, &deployed),
        200,
        "the image a Transition deployed is kept"
    );
    for index in [true, false] {
        let gone = signatures
            .get(&signature_of(&old_image, &repo, index))
            .await
            .unwrap();
        assert!(gone.is_none(), "the old image's signatures were deleted");
        let kept = signatures
            .get(&signature_of(&deployed_image, &deployed_repo, index))
            .await
            .unwrap();
        assert!(kept.is_some(), "the deployed image keeps its signatures");
    }
}
