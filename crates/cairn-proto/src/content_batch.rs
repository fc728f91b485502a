//! The body of a `POST /files/content_batch` response: a record per path asked for, in
//! order, each its JSON header's length as a 4-byte big-endian integer, the header
//! ([`ContentBatchHeader`]: an entry, or why there is none), then — when the header
//! holds an entry — exactly `entry.size` bytes of the file's content.
//!
//! Bytes in, values out: the server writes a record with [`encode_record`], the client
//! reads a whole response with [`decode_records`]. Every declared length is checked
//! against its limit ([`MAX_CONTENT_BATCH_HEADER`], [`MAX_CONTENT_BATCH_FILE`],
//! [`MAX_CONTENT_BATCH_BYTES`]) before the bytes it names are looked at, and a record's
//! content is a range of the body it was decoded from, never a copy.

use std::fmt;
use std::ops::Range;

use crate::limits::{MAX_CONTENT_BATCH_BYTES, MAX_CONTENT_BATCH_FILE, MAX_CONTENT_BATCH_HEADER};
use crate::ContentBatchHeader;

/// The bytes of the header length in front of each record.
pub const LENGTH_LEN: usize = 4;

/// Why a record cannot be written, or a response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The body ends inside a record's header length, at byte `at`.
    LengthCutShort { at: usize },
    /// A header is longer than [`MAX_CONTENT_BATCH_HEADER`].
    HeaderTooLong { len: usize, max: usize },
    /// A header announces more bytes than the body still holds.
    HeaderCutShort { len: usize, available: usize },
    /// A header is not the JSON of a [`ContentBatchHeader`] (or, when writing, could not
    /// be made into it).
    BadHeader(String),
    /// A file is larger than [`MAX_CONTENT_BATCH_FILE`].
    ContentTooLarge { size: u64, max: u64 },
    /// The files' contents together pass [`MAX_CONTENT_BATCH_BYTES`].
    OverBudget { max: u64 },
    /// A file announces more bytes than the body still holds.
    ContentCutShort { size: u64, available: usize },
    /// The content handed to [`encode_record`] is not the size its header announces.
    SizeMismatch { announced: u64, given: u64 },
    /// More records than paths were asked for.
    TooManyRecords { expected: usize },
    /// Fewer records than paths were asked for.
    TooFewRecords { records: usize, expected: usize },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthCutShort { at } => write!(f, "a record is cut short at byte {at}"),
            Self::HeaderTooLong { len, max } => {
                write!(f, "a header of {len} bytes; the limit is {max}")
            }
            Self::HeaderCutShort { len, available } => write!(
                f,
                "a header is cut short: {len} bytes announced, {available} sent"
            ),
            Self::BadHeader(err) => write!(f, "a bad header: {err}"),
            Self::ContentTooLarge { size, max } => {
                write!(f, "a file of {size} bytes; the limit is {max}")
            }
            Self::OverBudget { max } => {
                write!(
                    f,
                    "the files hold more than the {max} bytes a response carries"
                )
            }
            Self::ContentCutShort { size, available } => write!(
                f,
                "a file's content is cut short: {size} bytes announced, {available} sent"
            ),
            Self::SizeMismatch { announced, given } => write!(
                f,
                "a header announces {announced} bytes for {given} bytes of content"
            ),
            Self::TooManyRecords { expected } => {
                write!(f, "more records than the {expected} paths asked for")
            }
            Self::TooFewRecords { records, expected } => {
                write!(f, "{records} records for {expected} paths")
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// The content bytes that follow `header`: its entry's size, or none for an error.
pub fn content_size(header: &ContentBatchHeader) -> u64 {
    header.entry.as_ref().map_or(0, |entry| entry.size)
}

/// Appends the record of `header` and its `content` (the file's bytes in pieces, such
/// as its blocks) to `out`. Writes nothing if the header is too long or the content is
/// not the size the header announces.
pub fn encode_record<B: AsRef<[u8]>>(
    header: &ContentBatchHeader,
    content: &[B],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let json = serde_json::to_vec(header).map_err(|err| RecordError::BadHeader(err.to_string()))?;
    if json.len() > MAX_CONTENT_BATCH_HEADER {
        return Err(RecordError::HeaderTooLong {
            len: json.len(),
            max: MAX_CONTENT_BATCH_HEADER,
        });
    }
    let given: usize = content.iter().map(|piece| piece.as_ref().len()).sum();
    let announced = content_size(header);
    if given as u64 != announced {
        return Err(RecordError::SizeMismatch {
            announced,
            given: given as u64,
        });
    }
    out.reserve(LENGTH_LEN + json.len() + given);
    // The header limit is far below 4 GiB, so the length fits its four bytes.
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    for piece in content {
        out.extend_from_slice(piece.as_ref());
    }
    Ok(())
}

/// One decoded record: its header and where its content is in the body.
#[derive(Debug, Clone)]
pub struct Record {
    pub header: ContentBatchHeader,
    pub content: Range<usize>,
}

/// The records of a response, one at a time, each checked as it is reached (see
/// [`RecordError`]); after an error the iterator ends. The response must hold exactly
/// `expected` records, one per path asked for.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    body: &'a [u8],
    at: usize,
    expected: usize,
    taken: usize,
    content_total: u64,
    done: bool,
}

impl<'a> Records<'a> {
    /// Reads `body`, the answer to a request for `expected` paths.
    pub fn new(body: &'a [u8], expected: usize) -> Self {
        Self {
            body,
            at: 0,
            expected,
            taken: 0,
            content_total: 0,
            done: false,
        }
    }

    fn next_record(&mut self) -> Result<Record, RecordError> {
        if self.taken == self.expected {
            return Err(RecordError::TooManyRecords {
                expected: self.expected,
            });
        }
        let rest = &self.body[self.at..];
        let Some(len) = rest.get(..LENGTH_LEN) else {
            return Err(RecordError::LengthCutShort { at: self.at });
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_CONTENT_BATCH_HEADER {
            return Err(RecordError::HeaderTooLong {
                len,
                max: MAX_CONTENT_BATCH_HEADER,
            });
        }
        let rest = &rest[LENGTH_LEN..];
        let Some(json) = rest.get(..len) else {
            return Err(RecordError::HeaderCutShort {
                len,
                available: rest.len(),
            });
        };
        let header: ContentBatchHeader =
            serde_json::from_slice(json).map_err(|err| RecordError::BadHeader(err.to_string()))?;
        let size = content_size(&header);
        if size > MAX_CONTENT_BATCH_FILE {
            return Err(RecordError::ContentTooLarge {
                size,
                max: MAX_CONTENT_BATCH_FILE,
            });
        }
        if self.content_total + size > MAX_CONTENT_BATCH_BYTES {
            return Err(RecordError::OverBudget {
                max: MAX_CONTENT_BATCH_BYTES,
            });
        }
        let start = self.at + LENGTH_LEN + len;
        let available = self.body.len() - start;
        // At most MAX_CONTENT_BATCH_FILE, so it fits a usize.
        let size_usize = size as usize;
        if available < size_usize {
            return Err(RecordError::ContentCutShort { size, available });
        }
        self.at = start + size_usize;
        self.taken += 1;
        self.content_total += size;
        Ok(Record {
            header,
            content: start..self.at,
        })
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = if self.at == self.body.len() {
            self.done = true;
            if self.taken == self.expected {
                return None;
            }
            Err(RecordError::TooFewRecords {
                records: self.taken,
                expected: self.expected,
            })
        } else {
            self.next_record()
        };
        self.done |= item.is_err();
        Some(item)
    }
}

/// Every record of a whole response to a request for `expected` paths, or the first
/// reason to refuse it.
pub fn decode_records(body: &[u8], expected: usize) -> Result<Vec<Record>, RecordError> {
    Records::new(body, expected).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{EntryInfo, EntryKind, ErrorDetail};

    fn entry(path: &str, size: u64) -> EntryInfo {
        EntryInfo {
            id: 1,
            path: path.into(),
            name: path.rsplit('/').next().unwrap_or_default().into(),
            kind: EntryKind::File,
            size,
            rev: Some("r1".into()),
            content_hash: Some("00".into()),
            mtime: 0,
            modified_at: 0,
            shared: None,
        }
    }

    fn error(code: &str) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: format!("{code} happened"),
            current: None,
            missing_blocks: None,
        }
    }

    /// A file's content, or an error's code.
    #[derive(Debug, Clone)]
    enum Item {
        File(String, Vec<u8>),
        Error(String),
    }

    fn header(item: &Item) -> ContentBatchHeader {
        match item {
            Item::File(path, content) => ContentBatchHeader {
                entry: Some(entry(path, content.len() as u64)),
                error: None,
            },
            Item::Error(code) => ContentBatchHeader {
                entry: None,
                error: Some(error(code)),
            },
        }
    }

    fn encode(items: &[Item]) -> (Vec<u8>, Vec<usize>) {
        let mut body = Vec::new();
        let mut ends = vec![0];
        for item in items {
            let content: &[u8] = match item {
                Item::File(_, content) => content,
                Item::Error(_) => &[],
            };
            // In two pieces, as the server sends a file's blocks.
            let (a, b) = content.split_at(content.len() / 2);
            encode_record(&header(item), &[a, b], &mut body).unwrap();
            ends.push(body.len());
        }
        (body, ends)
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        let item = prop_oneof![
            (
                "/[a-z\u{e9}\"\\\\]{1,12}",
                prop::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(path, content)| Item::File(path, content)),
            "[a-z_]{1,10}".prop_map(Item::Error),
        ];
        prop::collection::vec(item, 0..8)
    }

    proptest! {
        #[test]
        fn records_round_trip(items in items()) {
            let (body, _) = encode(&items);
            let records = decode_records(&body, items.len()).unwrap();
            prop_assert_eq!(records.len(), items.len());
            for (record, item) in records.iter().zip(&items) {
                match item {
                    Item::File(path, content) => {
                        let entry = record.header.entry.as_ref().unwrap();
                        prop_assert_eq!(&entry.path, path);
                        prop_assert_eq!(entry.kind, EntryKind::File);
                        prop_assert_eq!(&body[record.content.clone()], &content[..]);
                    }
                    Item::Error(code) => {
                        prop_assert_eq!(&record.header.error.as_ref().unwrap().code, code);
                        prop_assert!(record.content.is_empty());
                    }
                }
            }
        }

        /// Every proper prefix of a valid response is refused: inside a record as cut
        /// short, at a record boundary as too few records.
        #[test]
        fn every_truncation_is_refused(items in items()) {
            let (body, ends) = encode(&items);
            for cut in 0..body.len() {
                let result = decode_records(&body[..cut], items.len());
                match ends.iter().position(|&end| end == cut) {
                    Some(whole) => prop_assert_eq!(
                        result.unwrap_err(),
                        RecordError::TooFewRecords { records: whole, expected: items.len() }
                    ),
                    None => prop_assert!(matches!(
                        result,
                        Err(RecordError::LengthCutShort { .. }
                            | RecordError::HeaderCutShort { .. }
                            | RecordError::ContentCutShort { .. })
                    ), "cut at {cut}: {result:?}"),
                }
            }
        }

        #[test]
        fn extra_bytes_are_refused(items in items(), extra in prop::collection::vec(any::<u8>(), 1..40)) {
            let (mut body, _) = encode(&items);
            body.extend_from_slice(&extra);
            prop_assert!(decode_records(&body, items.len()).is_err());
        }

        /// Arbitrary bytes never panic: they decode or are refused.
        #[test]
        fn garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..200), expected in 0usize..4) {
            let _ = decode_records(&body, expected);
        }
    }

    fn record_with_length(len: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = len.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn a_huge_header_length_is_refused_before_it_is_read() {
        let body = record_with_length(u32::MAX, b"{}");
        assert_eq!(
            decode_records(&body, 1).unwrap_err(),
            RecordError::HeaderTooLong {
                len: u32::MAX as usize,
                max: MAX_CONTENT_BATCH_HEADER
            }
        );
        let body = record_with_length(1000, b"{}");
        assert_eq!(
            decode_records(&body, 1).unwrap_err(),
            RecordError::HeaderCutShort {
                len: 1000,
                available: 2
            }
        );
    }

    #[test]
    fn a_zero_length_header_is_bad_json() {
        let body = record_with_length(0, b"");
        assert!(matches!(
            decode_records(&body, 1),
            Err(RecordError::BadHeader(_))
        ));
    }

    #[test]
    fn bad_json_is_refused() {
        for json in [&b"{"[..], b"\"text\"", b"{\"entry\": 5}", b"\xff\xfe"] {
            let body = record_with_length(json.len() as u32, json);
            assert!(
                matches!(decode_records(&body, 1), Err(RecordError::BadHeader(_))),
                "{json:?}"
            );
        }
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_the_content_is_read() {
        let json = serde_json::to_vec(&ContentBatchHeader {
            entry: Some(entry("/big", u64::MAX)),
            error: None,
        })
        .unwrap();
        let body = record_with_length(json.len() as u32, &json);
        assert_eq!(
            decode_records(&body, 1).unwrap_err(),
            RecordError::ContentTooLarge {
                size: u64::MAX,
                max: MAX_CONTENT_BATCH_FILE
            }
        );
    }

    #[test]
    fn files_past_the_response_budget_are_refused() {
        let per_file = MAX_CONTENT_BATCH_FILE;
        let files = (MAX_CONTENT_BATCH_BYTES / per_file) as usize;
        let mut body = Vec::new();
        let content = vec![0u8; per_file as usize];
        for i in 0..=files {
            let header = ContentBatchHeader {
                entry: Some(entry(&format!("/f{i}"), per_file)),
                error: None,
            };
            encode_record(&header, &[&content], &mut body).unwrap();
        }
        assert_eq!(
            decode_records(&body, files + 1).unwrap_err(),
            RecordError::OverBudget {
                max: MAX_CONTENT_BATCH_BYTES
            }
        );
    }

    #[test]
    fn more_records_than_paths_are_refused() {
        let (body, _) = encode(&[Item::Error("gone".into()), Item::Error("gone".into())]);
        assert_eq!(
            decode_records(&body, 1).unwrap_err(),
            RecordError::TooManyRecords { expected: 1 }
        );
        assert_eq!(decode_records(&body, 2).unwrap().len(), 2);
        assert_eq!(
            decode_records(&body, 3).unwrap_err(),
            RecordError::TooFewRecords {
                records: 2,
                expected: 3
            }
        );
        assert_eq!(decode_records(&[], 0).unwrap().len(), 0);
    }

    #[test]
    fn encoding_checks_what_it_writes() {
        let mut out = Vec::new();
        let header = header(&Item::File("/a".into(), vec![1, 2, 3]));
        assert_eq!(
            encode_record(&header, &[&[1u8, 2][..]], &mut out),
            Err(RecordError::SizeMismatch {
                announced: 3,
                given: 2
            })
        );
        let long = ContentBatchHeader {
            entry: None,
            error: Some(ErrorDetail {
                message: "x".repeat(MAX_CONTENT_BATCH_HEADER),
                ..error("long")
            }),
        };
        assert!(matches!(
            encode_record::<&[u8]>(&long, &[], &mut out),
            Err(RecordError::HeaderTooLong { .. })
        ));
        assert!(out.is_empty(), "nothing was written");
    }
}
