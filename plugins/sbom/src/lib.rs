//! Kiln attestor `sbom`: an SPDX 2.3 document of what a pushed image holds.
//!
//! The host mounts the image's filesystem read-only at `/rootfs`; this
//! walks it once ([`catalog`]): the OS package databases (dpkg's status and
//! distroless `status.d`, apk's installed db), installed Python
//! distributions (`*.dist-info`, `*.egg-info`), and the lockfiles of npm,
//! pnpm, yarn, Cargo, Go, Poetry, pip (pinned requirements), Bundler and
//! Composer wherever they are. Every package gets its purl, the key
//! scanners such as syft agree on. The host signs the document and
//! attaches it beside the image as an in-toto attestation.

pub mod catalog;

use std::path::Path;

use catalog::Package;
use kiln_sdk::attestor::{AttestRequest, Attestation, Attestor, PluginError};

/// The in-toto predicate type of an SPDX document.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";

struct Sbom;

impl Attestor for Sbom {
    fn attest(request: AttestRequest) -> Result<Attestation, PluginError> {
        let root = Path::new(&request.rootfs);
        if !root.is_dir() {
            return Err(PluginError::InvalidInput(format!(
                "the image's filesystem is not mounted at {}",
                request.rootfs
            )));
        }
        let (packages, truncated) = catalog::catalog(root);
        if truncated {
            kiln_sdk::log::warn(&format!(
                "sbom: the image has more than {} files; the SBOM lists what the first ones hold",
                catalog::MAX_ENTRIES
            ));
        }
        let name = request
            .image
            .image_refs
            .first()
            .cloned()
            .unwrap_or_else(|| request.image.digest.clone());
        let document = spdx(&name, &request.image.digest, &packages, &now());
        Ok(Attestation {
            predicate_type: SPDX_PREDICATE.into(),
            predicate: document.to_string(),
            summary: summary(&packages),
        })
    }
}

kiln_sdk::export_attestor!(Sbom);

/// `142 packages: deb 120, pypi 22`.
pub fn summary(packages: &[Package]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for package in packages {
        *counts.entry(package.ecosystem).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(ecosystem, count)| format!("{ecosystem} {count}"))
        .collect();
    if parts.is_empty() {
        "0 packages".into()
    } else {
        format!("{} packages: {}", packages.len(), parts.join(", "))
    }
}

/// The SPDX 2.3 document (JSON): the image as the described package, each
/// package found contained in it, with its purl.
pub fn spdx(name: &str, digest: &str, packages: &[Package], created: &str) -> serde_json::Value {
    let hex = digest.trim_start_matches("sha256:");
    let mut spdx_packages = vec![serde_json::json!({
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
    })];
    let mut relationships = vec![serde_json::json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (index, package) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{index}", package.ecosystem);
        spdx_packages.push(serde_json::json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("found in {}", package.found_in),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl,
            }],
        }));
        relationships.push(serde_json::json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://kiln.dev/spdx/{hex}"),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: kiln-sbom-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    })
}

/// Now, as SPDX writes times (`2026-12-03T06:00:00Z`).
fn now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(seconds)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), by the civil
/// calendar (days to year/month/day after Howard Hinnant's algorithm).
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_274_123), "2026-12-03T05:02:03Z");
    }

    #[test]
    fn the_document_is_spdx_2_3_with_a_purl_per_package() {
        let packages = vec![Package {
            ecosystem: "deb",
            name: "bash".into(),
            version: "5.2.15-2+b7".into(),
            purl: "pkg:deb/debian/bash@5.2.15-2+b7?arch=amd64&distro=debian-12".into(),
            found_in: "/var/lib/dpkg/status".into(),
        }];
        let document = spdx(
            "r.example/app:v1",
            "sha256:ab",
            &packages,
            "2026-12-03T00:00:00Z",
        );
        assert_eq!(document["spdxVersion"], "SPDX-2.3");
        assert_eq!(document["packages"][1]["name"], "bash");
        assert_eq!(
            document["packages"][1]["externalRefs"][0]["referenceLocator"],
            packages[0].purl.as_str()
        );
        assert_eq!(document["relationships"].as_array().unwrap().len(), 2);
        assert_eq!(summary(&packages), "1 packages: deb 1");
        assert_eq!(summary(&[]), "0 packages");
    }
}
