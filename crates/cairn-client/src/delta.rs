//! Blocks sent and fetched as deltas from a block the other side holds (see
//! `cairn_core::delta` for the formats and why there are two). Each method falls back to
//! the whole block whenever a delta cannot help: no base, a base the server no longer
//! holds (collected since), a delta not worth it, or one that does not rebuild the
//! block. A block is only ever accepted by its hash, whichever way it came.

use bytes::Bytes;
use cairn_core::chunk::MAX_CHUNK_SIZE_LIMIT;
use cairn_core::delta;
use cairn_core::BlockHash;
use reqwest::Method;

use crate::client::{tagged, with_retries};
use crate::error::{ClientError, RetryPolicy};
use crate::Client;

impl Client {
    /// `GET /api/v1/blocks/{base}/signature`: the rsync signature of a block the caller
    /// holds; `None` when the server has no such block for the caller.
    pub async fn block_signature(&self, base: &BlockHash) -> Result<Option<Bytes>, ClientError> {
        let path = format!("blocks/{}/signature", base.to_hex());
        let sent = with_retries(RetryPolicy::Idempotent, || async {
            let response = self.send_once(self.request(Method::GET, &path)).await?;
            Ok(response.bytes().await?)
        })
        .await;
        match sent {
            Ok(signature) => Ok(Some(signature)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Uploads block `hash` (`data`, already checked against it), as an rsync delta from
    /// `base` when that is worth it (`PUT /blocks/{hash}/from/{base}`), else whole.
    /// Returns the payload bytes sent.
    /// Tagged with the pending upload `pending` when there is one (see
    /// [`Client::put_block_for`]).
    pub async fn put_block_near(
        &self,
        hash: &BlockHash,
        data: Bytes,
        base: Option<BlockHash>,
        pending: Option<&str>,
    ) -> Result<u64, ClientError> {
        if let Some(base) = base {
            if let Some(sent) = self.try_put_delta(hash, &data, base, pending).await? {
                return Ok(sent);
            }
        }
        let size = data.len() as u64;
        self.put_block_for(hash, data, pending).await?;
        Ok(size)
    }

    /// The delta upload of [`Client::put_block_near`]; `None` when the block must go
    /// whole.
    async fn try_put_delta(
        &self,
        hash: &BlockHash,
        data: &Bytes,
        base: BlockHash,
        pending: Option<&str>,
    ) -> Result<Option<u64>, ClientError> {
        let Some(signature) = self.block_signature(&base).await? else {
            return Ok(None);
        };
        let new = data.clone();
        let made = tokio::task::spawn_blocking(move || {
            delta::rsync_diff(&signature, &new, MAX_CHUNK_SIZE_LIMIT)
        })
        .await
        .map_err(|err| ClientError::Protocol(format!("delta task failed: {err}")))?;
        let diff = match made {
            Ok(diff) if delta::worth_sending(diff.len(), data.len()) => Bytes::from(diff),
            // A signature this client cannot use, or too little in common.
            _ => return Ok(None),
        };
        let path = format!("blocks/{}/from/{}", hash.to_hex(), base.to_hex());
        let sent = diff.len() as u64;
        let result = with_retries(RetryPolicy::Idempotent, || {
            self.send_once(
                tagged(self.request(Method::PUT, &path), pending)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(diff.clone()),
            )
        })
        .await;
        match result {
            Ok(_) => Ok(Some(sent)),
            // The base was collected meanwhile, or the delta did not rebuild the block.
            Err(err) if matches!(err.status(), Some(404 | 422)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Fetches block `hash` of `size` bytes, as a zstd patch against `base` (a block
    /// this side holds, with its bytes) when the server finds that worth it
    /// (`GET /blocks/{hash}/from/{base}`), else whole. A patch that does not rebuild the
    /// block is discarded and the block fetched whole. Returns the block, checked
    /// against its hash, and the payload bytes received.
    pub async fn get_block_near(
        &self,
        hash: &BlockHash,
        size: u32,
        base: Option<(BlockHash, Bytes)>,
    ) -> Result<(Bytes, u64), ClientError> {
        let Some((base_hash, base)) = base else {
            let data = self.get_block(hash).await?;
            let received = data.len() as u64;
            return Ok((data, received));
        };
        let path = format!("blocks/{}/from/{}", hash.to_hex(), base_hash.to_hex());
        let (body, patched) = with_retries(RetryPolicy::Idempotent, || async {
            let response = self.send_once(self.request(Method::GET, &path)).await?;
            let patched = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes() == cairn_proto::BLOCK_PATCH_CONTENT_TYPE.as_bytes());
            Ok((response.bytes().await?, patched))
        })
        .await?;
        let received = body.len() as u64;
        let expected = *hash;
        let rebuilt = tokio::task::spawn_blocking(move || {
            let form = match patched {
                true => delta::Form::Patch,
                false => delta::Form::Whole,
            };
            delta::rebuild(form, &base, &body, expected, size as usize)
                .ok()
                .map(Bytes::from)
        })
        .await
        .map_err(|err| ClientError::Protocol(format!("patch task failed: {err}")))?;
        match rebuilt {
            Some(data) => Ok((data, received)),
            None => {
                let data = self.get_block(hash).await?;
                let whole = data.len() as u64;
                Ok((data, received + whole))
            }
        }
    }
}
