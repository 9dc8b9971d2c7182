//! `load`: one streaming pass puts every archive member into the blob store (verifying what is
//! named by digest), then the layout found (OCI `index.json`, else Docker `manifest.json`) is
//! checked against what arrived, and only when every image checks out is the index touched.

use std::io::Read;

use oci_spec::image::Digest;

use super::ingest::{self, Ingested};
use super::plan::Plan;
use super::{INDEX_JSON, MANIFEST_JSON, docker, oci};
use crate::error::{Result, StoreError};
use crate::reference::Reference;
use crate::root::Store;

/// One image `load` recorded: its tags (full references) and its ID (config digest).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub tags: Vec<Reference>,
    pub id: Digest,
}

/// Load every image of a `docker save`, `berth save`, docker-archive or OCI archive stream.
pub fn load(store: &Store, input: &mut dyn Read) -> Result<Vec<Loaded>> {
    // Blobs written from here on are linked from the index only at the end; keep gc away.
    let _writer = store.writer_lock()?;
    let ingested = ingest::ingest(store, input)?;
    let plans = plan(store, &ingested)?;
    for p in &plans {
        store.add_image(&p.image, &p.tags)?;
    }
    Ok(plans
        .into_iter()
        .map(|p| Loaded {
            tags: p.tags,
            id: p.image.config,
        })
        .collect())
}

fn plan(store: &Store, ing: &Ingested) -> Result<Vec<Plan>> {
    let oci = if ing.has(INDEX_JSON) {
        oci::plan(store, ing)?
    } else {
        Vec::new()
    };
    // A Docker 25 archive whose index.json lists no images may still have them in manifest.json.
    let plans = if !oci.is_empty() {
        oci
    } else if ing.has(MANIFEST_JSON) {
        docker::plan(store, ing)?
    } else if ing.has(INDEX_JSON) {
        Vec::new()
    } else if ing.has(super::REPOSITORIES) {
        return Err(StoreError::Unsupported {
            what: "image archive".into(),
            reason: "it has no manifest.json (a pre-1.10 Docker archive); re-save it with a \
                     newer Docker"
                .into(),
        });
    } else {
        return Err(StoreError::invalid(
            "image archive",
            "it has neither index.json nor manifest.json; expected the output of `docker save`, \
             `berth save` or `skopeo copy … docker-archive:/oci-archive:`",
        ));
    };
    if plans.is_empty() {
        return Err(StoreError::invalid(
            "image archive",
            "it contains no images",
        ));
    }
    Ok(merge(plans))
}

/// Entries naming the same manifest become one image with the union of their tags.
fn merge(plans: Vec<Plan>) -> Vec<Plan> {
    let mut out: Vec<Plan> = Vec::new();
    for p in plans {
        match out
            .iter_mut()
            .find(|o| o.image.manifest == p.image.manifest)
        {
            Some(o) => {
                for t in p.tags {
                    if !o.tags.contains(&t) {
                        o.tags.push(t);
                    }
                }
            }
            None => out.push(p),
        }
    }
    out
}
