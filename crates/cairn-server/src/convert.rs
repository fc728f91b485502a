//! Domain types to wire types, written out by hand (STYLE: protocol at the edge only).

use cairn_meta::{Entry, EntryKind, User};
use cairn_proto as proto;

pub fn entry_info(entry: &Entry) -> proto::EntryInfo {
    proto::EntryInfo {
        id: entry.id.0,
        path: entry.path.as_str().to_owned(),
        name: entry.path.name().unwrap_or("").to_owned(),
        kind: match entry.kind {
            EntryKind::File => proto::EntryKind::File,
            EntryKind::Folder => proto::EntryKind::Folder,
        },
        size: entry.size.max(0) as u64,
        rev: entry.rev.map(|v| v.0.to_string()),
        content_hash: entry.content_hash.map(|h| h.to_hex()),
        mtime: entry.mtime,
        modified_at: entry.modified_at,
        shared: None,
    }
}

pub fn user_info(user: &User) -> proto::UserInfo {
    proto::UserInfo {
        id: user.id.0,
        name: user.name.clone(),
        is_admin: user.is_admin,
        quota_bytes: user.quota_bytes,
        created_at: user.created_at,
    }
}

pub fn device_info(device: &cairn_meta::Device) -> proto::DeviceInfo {
    proto::DeviceInfo {
        id: device.id.0,
        name: device.name.clone(),
        created_at: device.created_at,
    }
}

pub fn app_password_info(app_password: &cairn_meta::AppPassword) -> proto::AppPasswordInfo {
    proto::AppPasswordInfo {
        name: app_password.name.clone(),
        created_at: app_password.created_at,
        last_used_at: app_password.last_used_at,
    }
}
