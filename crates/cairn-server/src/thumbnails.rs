//! Thumbnails of pictures: made on the server, cached on disk, collected with their file.
//!
//! A thumbnail is made from one version of a file (JPEG, PNG, GIF or WebP), so it is
//! keyed by that version's revision and its size, and never goes stale: a new version is
//! a new key. The cache is `DATA/thumbnails/XX/REV-SIZE.jpg` (`XX` the revision's last
//! byte in hex, so no folder grows past a few thousand files); a node that lacks one
//! makes it again. Each file is written to a temporary name and renamed, so a reader
//! never sees half of one; nothing is fsynced, since a lost thumbnail is made again.
//!
//! Decoding untrusted pictures is guarded: only files up to `thumbnail_max_source_bytes`
//! are read, the format is taken from the content (never the name), a picture whose
//! header declares more than [`MAX_PIXELS`] is refused before any pixel is decoded
//! (image's own `Limits` bound each side and the decoder's allocations too), and at most
//! [`DECODES`] are made at once, each on a blocking thread.
//!
//! The maintenance pass deletes cached thumbnails whose version no longer exists
//! (retention, a trash purge, a deleted account): [`Thumbnails::collect`].

use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use cairn_core::VersionId;
use cairn_meta::MetaStore;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The sizes a thumbnail is made at: the longest side, in pixels.
pub const SIZES: [u32; 3] = [64, 256, 1024];

/// The largest picture decoded, in pixels (width × height): 64 megapixels, 256 MiB as
/// RGBA, bigger than any phone's photo.
pub const MAX_PIXELS: u64 = 64 << 20;

/// The longest side decoded, in pixels.
const MAX_SIDE: u32 = 32_768;

/// Thumbnails made at the same time in this process; more wait their turn.
pub const DECODES: usize = 2;

/// The cache and its limits; cheap to clone.
#[derive(Debug, Clone)]
pub struct Thumbnails {
    dir: PathBuf,
    /// Larger files get no thumbnail.
    pub max_source_bytes: u64,
    decodes: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Why no thumbnail can be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// Not a picture this server decodes (by its content).
    #[error("not a picture a thumbnail can be made of (JPEG, PNG, GIF or WebP)")]
    NotAnImage,
    /// Declared larger than [`MAX_PIXELS`], or beyond the decoder's limits.
    #[error("the picture is too large to make a thumbnail of ({0})")]
    TooLarge(String),
    /// Damaged or truncated picture data.
    #[error("the picture cannot be read: {0}")]
    Unreadable(String),
    /// The cache could not be read or written.
    #[error("thumbnail cache: {0}")]
    Io(#[from] std::io::Error),
}

impl Thumbnails {
    /// The cache under `data_dir/thumbnails`.
    pub fn new(data_dir: &Path, max_source_bytes: u64) -> Self {
        Self {
            dir: data_dir.join("thumbnails"),
            max_source_bytes,
            decodes: std::sync::Arc::new(tokio::sync::Semaphore::new(DECODES)),
        }
    }

    fn path(&self, rev: VersionId, size: u32) -> PathBuf {
        self.dir
            .join(format!("{:02x}", rev.0 & 0xff))
            .join(format!("{}-{size}.jpg", rev.0))
    }

    /// The cached thumbnail of `rev` at `size`, if one was made.
    pub async fn cached(&self, rev: VersionId, size: u32) -> std::io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(rev, size)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Makes the thumbnail of `rev` at `size` from the file's bytes, caches it and
    /// returns it. Waits while [`DECODES`] others are being made.
    pub async fn make(
        &self,
        rev: VersionId,
        size: u32,
        source: Vec<u8>,
    ) -> Result<Vec<u8>, ThumbnailError> {
        let _turn = self
            .decodes
            .acquire()
            .await
            .map_err(|_| ThumbnailError::Io(std::io::Error::other("shutting down")))?;
        let jpeg = tokio::task::spawn_blocking(move || render(&source, size))
            .await
            .map_err(|e| ThumbnailError::Unreadable(format!("decoder panicked: {e}")))??;
        let path = self.path(rev, size);
        let folder = path.parent().unwrap_or(&self.dir).to_owned();
        tokio::fs::create_dir_all(&folder).await?;
        let temp = folder.join(format!(
            ".tmp-{}-{size}-{:016x}",
            rev.0,
            rand::random::<u64>()
        ));
        tokio::fs::write(&temp, &jpeg).await?;
        if let Err(err) = tokio::fs::rename(&temp, &path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(err.into());
        }
        Ok(jpeg)
    }

    /// Deletes every cached thumbnail whose version no longer exists, and temporary
    /// files left by a crash; how many thumbnails it deleted.
    pub async fn collect(&self, meta: &MetaStore) -> Result<u64, CollectError> {
        let mut files: Vec<(VersionId, PathBuf)> = Vec::new();
        let mut folders = match tokio::fs::read_dir(&self.dir).await {
            Ok(dir) => dir,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        while let Some(folder) = folders.next_entry().await? {
            if !folder.file_type().await?.is_dir() {
                continue;
            }
            let mut entries = tokio::fs::read_dir(folder.path()).await?;
            while let Some(file) = entries.next_entry().await? {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".tmp-") {
                    // A thumbnail being written takes well under an hour.
                    let old = file
                        .metadata()
                        .await?
                        .modified()?
                        .elapsed()
                        .is_ok_and(|age| age.as_secs() > 3600);
                    if old {
                        remove(&file.path()).await?;
                    }
                    continue;
                }
                let rev = name
                    .strip_suffix(".jpg")
                    .and_then(|stem| stem.split_once('-'))
                    .and_then(|(rev, _)| rev.parse::<i64>().ok());
                if let Some(rev) = rev {
                    files.push((VersionId(rev), file.path()));
                }
            }
        }
        let revs: Vec<VersionId> = files
            .iter()
            .map(|(rev, _)| *rev)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let alive = meta.existing_versions(&revs).await?;
        let mut deleted = 0;
        for (rev, path) in files {
            if !alive.contains(&rev) {
                remove(&path).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Why collecting thumbnails stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading the thumbnail cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("asking which versions exist: {0}")]
    Meta(#[from] cairn_meta::MetaError),
}

async fn remove(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Decodes `source`, turns it as its EXIF orientation says, scales it to fit `size` ×
/// `size` (never up), lays it on white (JPEG has no transparency) and encodes a JPEG.
fn render(source: &[u8], size: u32) -> Result<Vec<u8>, ThumbnailError> {
    let mut reader = ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(ThumbnailError::Io)?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) => {}
        _ => return Err(ThumbnailError::NotAnImage),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ThumbnailError::TooLarge(format!(
            "{width} × {height} pixels; at most {} megapixels",
            MAX_PIXELS >> 20
        )));
    }
    let orientation = decoder.orientation().map_err(image_error)?;
    let mut picture = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    picture.apply_orientation(orientation);
    let picture = if picture.width() > size || picture.height() > size {
        picture.thumbnail(size, size)
    } else {
        picture
    };
    let rgba = picture.to_rgba8();
    let rgb = image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white =
            |c: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a))) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    });
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82);
    rgb.write_with_encoder(encoder).map_err(image_error)?;
    Ok(out)
}

fn image_error(err: image::ImageError) -> ThumbnailError {
    match err {
        image::ImageError::Limits(limit) => ThumbnailError::TooLarge(limit.to_string()),
        image::ImageError::Unsupported(_) => ThumbnailError::NotAnImage,
        other => ThumbnailError::Unreadable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::RgbaImage::from_pixel(width, height, image::Rgba([200, 10, 10, 128]));
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn scales_down_never_up() {
        let thumb = image::load_from_memory(&render(&png(600, 300), 256).unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 128));
        let thumb = image::load_from_memory(&render(&png(40, 20), 256).unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (40, 20));
        // Half-transparent red over white.
        let [r, g, _] = thumb.to_rgb8().get_pixel(5, 5).0;
        assert!(r > 200 && g > 100 && g < 160, "{r} {g}");
    }

    #[test]
    fn refuses_what_is_not_a_picture_or_too_large() {
        assert!(matches!(
            render(b"<svg/>", 64),
            Err(ThumbnailError::NotAnImage)
        ));
        // A PNG whose header claims 30000 × 30000 pixels (3.4 GiB as RGBA), with a
        // correct checksum: refused from its header, before any pixel is decoded.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(
            matches!(render(&bomb, 64), Err(ThumbnailError::TooLarge(_))),
            "{:?}",
            render(&bomb, 64)
        );
    }

    /// PNG's CRC-32 (ISO-HDLC), bit by bit.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
