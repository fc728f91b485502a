//! Properties beyond RFC 4918's live ones: the ownCloud/Nextcloud properties that their
//! clients (rclone's `nextcloud` vendor, the phone apps) read, made from the entry; and
//! dead properties, whatever a client stores with PROPPATCH, kept by entry in the
//! metadata store (`MetaStore::dav_props`).

use axum::http::StatusCode;
use cairn_meta::DeadProp;
use dav_server::fs::DavProp;

use crate::error::{ApiError, ApiResult};

use super::fs::{CairnFs, Meta};

/// The ownCloud namespace.
pub(crate) const OC: &str = "http://owncloud.org/ns";

/// How many dead properties one entry may carry: enough for any client, and a bound on
/// what one account can make the database hold per entry.
pub(crate) const MAX_DEAD_PROPS: usize = 64;

/// The ownCloud properties Cairn makes, by name.
fn oc_value(meta: &Meta, name: &str) -> Option<String> {
    Some(match name {
        "fileid" => meta.id.0.to_string(),
        // Nextcloud's id is the file id padded to eight digits and the instance's id.
        "id" => format!("{:08}cairn", meta.id.0),
        "size" => meta.size.to_string(),
        // R share, S shared, M mounted, G read, D delete, N rename, V move, W write
        // (files), C/K create files/folders (folders).
        "permissions" => {
            let mut p = String::from(if meta.mount { "SM" } else { "" });
            p.push('G');
            if meta.writable {
                p.push_str(if meta.dir { "DNVCK" } else { "DNVW" });
            }
            p
        }
        _ => return None,
    })
}

fn oc_prop(name: &str, value: &str) -> Vec<u8> {
    format!("<oc:{name} xmlns:oc=\"{OC}\">{value}</oc:{name}>").into_bytes()
}

fn is_oc(prop: &DavProp) -> bool {
    prop.namespace.as_deref() == Some(OC)
}

/// One property of `meta`'s entry that `dav-server` does not know itself.
pub(crate) async fn one(fs: &CairnFs, meta: &Meta, prop: &DavProp) -> ApiResult<Option<Vec<u8>>> {
    if is_oc(prop) {
        if let Some(value) = oc_value(meta, &prop.name) {
            return Ok(Some(oc_prop(&prop.name, &value)));
        }
    }
    if meta.id.0 == 0 {
        return Ok(None);
    }
    let namespace = prop.namespace.clone().unwrap_or_default();
    Ok(fs
        .state
        .meta
        .dav_props(meta.ns, meta.id)
        .await?
        .into_iter()
        .find(|p| p.namespace == namespace && p.name == prop.name)
        .map(|p| p.xml))
}

/// Every dead property of `meta`'s entry (for `allprop` and `propname`).
pub(crate) async fn all(fs: &CairnFs, meta: &Meta, with_values: bool) -> ApiResult<Vec<DavProp>> {
    if meta.id.0 == 0 {
        return Ok(Vec::new());
    }
    Ok(fs
        .state
        .meta
        .dav_props(meta.ns, meta.id)
        .await?
        .into_iter()
        .map(|p| DavProp {
            name: p.name,
            prefix: None,
            namespace: (!p.namespace.is_empty()).then_some(p.namespace),
            xml: with_values.then_some(p.xml),
        })
        .collect())
}

/// Applies a PROPPATCH to `meta`'s entry: all of it or, when one change is refused,
/// none (RFC 4918 §9.2), the others answered 424.
pub(crate) async fn patch(
    fs: &CairnFs,
    meta: &Meta,
    patch: Vec<(bool, DavProp)>,
) -> ApiResult<Vec<(StatusCode, DavProp)>> {
    let bare = |p: &DavProp| DavProp {
        xml: None,
        ..p.clone()
    };
    let refused = |p: &DavProp| meta.id.0 == 0 || (is_oc(p) && oc_value(meta, &p.name).is_some());
    if patch.iter().any(|(_, p)| refused(p)) {
        return Ok(patch
            .iter()
            .map(|(_, p)| {
                let status = if refused(p) {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::FAILED_DEPENDENCY
                };
                (status, bare(p))
            })
            .collect());
    }
    let changes: Vec<(DeadProp, bool)> = patch
        .iter()
        .map(|(set, p)| {
            let prop = DeadProp {
                namespace: p.namespace.clone().unwrap_or_default(),
                name: p.name.clone(),
                xml: p.xml.clone().unwrap_or_default(),
            };
            (prop, *set)
        })
        .collect();
    let existing = fs.state.meta.dav_props(meta.ns, meta.id).await?;
    let added = changes
        .iter()
        .filter(|(p, set)| {
            *set && !existing
                .iter()
                .any(|e| e.namespace == p.namespace && e.name == p.name)
        })
        .count();
    if existing.len() + added > MAX_DEAD_PROPS {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "too_many_properties",
            format!("an entry carries at most {MAX_DEAD_PROPS} properties"),
        ));
    }
    fs.state
        .meta
        .dav_props_patch(meta.ns, meta.id, &changes)
        .await?;
    Ok(patch
        .iter()
        .map(|(_, p)| (StatusCode::OK, bare(p)))
        .collect())
}
