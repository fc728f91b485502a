//! Streaming sync, the client's side (see `cairn-server/src/pending.rs`): an uploader
//! announces a large file before sending its blocks and tags each block upload with
//! the announcement; a reader lists what is coming and fetches each block as soon as
//! it is stored.

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_proto::{
    PendingUpload, PendingUploadCreated, PendingUploadRequest, PendingUploadsResponse,
};
use reqwest::Method;

use crate::client::with_retries;
use crate::error::{ClientError, RetryPolicy};
use crate::upload::block_refs;
use crate::Client;

/// Files from this size on are announced before their blocks are uploaded: below it,
/// the upload is over before a reader could start.
pub const ANNOUNCE_MIN_SIZE: u64 = 8 << 20;

impl Client {
    /// `POST /api/v1/uploads/pending`: announces the file about to be uploaded and
    /// committed at `remote`, made of `blocks`. Returns the id to tag block uploads with.
    pub async fn announce_upload(
        &self,
        remote: &str,
        blocks: &[(BlockHash, u32)],
    ) -> Result<PendingUploadCreated, ClientError> {
        let request = PendingUploadRequest {
            path: remote.to_owned(),
            blocks: block_refs(blocks),
        };
        // Announcing twice only costs a row that expires.
        self.post_json("uploads/pending", &request, RetryPolicy::Idempotent)
            .await
    }

    /// `DELETE /api/v1/uploads/pending/{id}`: the upload was committed or given up;
    /// readers stop fetching it. An upload already gone is fine.
    pub async fn end_upload(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("uploads/pending/{id}");
        let ended = with_retries(RetryPolicy::Idempotent, || async {
            self.send_once(self.request(Method::DELETE, &path)).await
        })
        .await;
        match ended {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `GET /api/v1/uploads/pending`: the uploads in progress into what this account
    /// reads, with which of their blocks are stored.
    pub async fn pending_uploads(&self) -> Result<Vec<PendingUpload>, ClientError> {
        let response: PendingUploadsResponse = self.get_json("uploads/pending", &[]).await?;
        Ok(response.uploads)
    }

    /// `GET /api/v1/uploads/pending/{id}/blocks/{hash}`: a stored block of a pending
    /// upload, checked against its hash.
    pub async fn get_pending_block(
        &self,
        id: &str,
        hash: &BlockHash,
    ) -> Result<Bytes, ClientError> {
        let path = format!("uploads/pending/{id}/blocks/{}", hash.to_hex());
        self.get_verified(&path, *hash).await
    }
}
