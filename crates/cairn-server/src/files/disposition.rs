//! How a file's raw content is answered so that it can never act in Cairn's origin.
//!
//! A stored file is untrusted: an HTML or SVG file opened at a Cairn URL would run its
//! script with the signed-in user's session. So every `GET /files/content` answer is a
//! download by default (`Content-Disposition: attachment`), carries `nosniff` (the
//! browser keeps the type it is told), and a `Content-Security-Policy` that loads
//! nothing and sandboxes the document (a unique origin, no script), whatever it is.
//! Asked for a preview (`inline=1`), it is shown in the browser only for kinds a browser
//! shows passively — pictures, sound, video, PDF — and text of every kind (HTML, SVG
//! source, scripts, Markdown, code, JSON) as `text/plain`, never as a type the browser
//! would interpret.
//!
//! PDF keeps the sandbox too: Chromium's built-in viewer (156, headless and not) renders
//! a PDF served with `default-src 'none'; sandbox`, both opened directly and in an
//! iframe (checked with playwright-core; see ARCHITECTURE.md).

use axum::http::HeaderValue;

/// The policy on every raw content answer: nothing loaded, nothing run, an opaque origin.
pub(crate) const SANDBOX_CSP: &str = "default-src 'none'; sandbox";

/// What a preview shows a file as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Preview {
    /// A picture, sound or video, with its own media type.
    Media(String),
    /// A PDF document.
    Pdf,
    /// Text of any kind, shown as plain UTF-8 text.
    Text,
}

impl Preview {
    /// What `name` is shown as in a preview, judged by its extension alone (the content
    /// is never sniffed); `None` for a kind that is only downloaded.
    pub(crate) fn of(name: &str) -> Option<Preview> {
        let ext = name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())?;
        if TEXT_EXTENSIONS.contains(&ext.as_str()) {
            return Some(Preview::Text);
        }
        let mime = mime_guess::from_ext(&ext).first()?;
        match (mime.type_().as_str(), mime.subtype().as_str()) {
            ("application", "pdf") => Some(Preview::Pdf),
            ("image" | "audio" | "video", _) => Some(Preview::Media(mime.essence_str().to_owned())),
            ("text", _) => Some(Preview::Text),
            ("application", sub)
                if matches!(
                    sub,
                    "json" | "xml" | "javascript" | "x-sh" | "toml" | "yaml"
                ) || sub.ends_with("+xml")
                    || sub.ends_with("+json") =>
            {
                Some(Preview::Text)
            }
            _ => None,
        }
    }

    /// The Content-Type a preview is served with.
    pub(crate) fn content_type(&self) -> HeaderValue {
        match self {
            Preview::Media(mime) => HeaderValue::from_str(mime)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            Preview::Pdf => HeaderValue::from_static("application/pdf"),
            Preview::Text => HeaderValue::from_static("text/plain; charset=utf-8"),
        }
    }
}

/// Code and text formats `mime_guess` does not call text (or does not know).
const TEXT_EXTENSIONS: &[&str] = &[
    "md",
    "markdown",
    "txt",
    "log",
    "csv",
    "tsv",
    "rs",
    "py",
    "go",
    "c",
    "h",
    "cc",
    "cpp",
    "hpp",
    "java",
    "kt",
    "swift",
    "rb",
    "php",
    "pl",
    "lua",
    "sh",
    "bash",
    "zsh",
    "ps1",
    "bat",
    "js",
    "mjs",
    "cjs",
    "ts",
    "tsx",
    "jsx",
    "css",
    "scss",
    "html",
    "htm",
    "xhtml",
    "xml",
    "svgz",
    "json",
    "jsonl",
    "yaml",
    "yml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "sql",
    "diff",
    "patch",
    "tex",
    "rst",
    "org",
    "vue",
    "svelte",
    "dockerfile",
    "gitignore",
    "env",
];

/// `Content-Disposition` for a file named `name`: `attachment` (a download) or `inline`
/// (shown), with the name as RFC 6266 gives it: `filename*=UTF-8''…` percent-encoded
/// (RFC 5987), exact for any name, and a plain `filename="…"` for old clients holding
/// the name's ASCII characters but quotes, backslashes and controls.
pub(crate) fn content_disposition(inline: bool, name: &str) -> HeaderValue {
    let kind = if inline { "inline" } else { "attachment" };
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let value = format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        rfc5987(name)
    );
    // Every byte above is visible ASCII, so this cannot fail; a plain `attachment` if
    // it ever did.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

/// `text` percent-encoded as an RFC 5987 `value-chars`: every byte but `attr-char`s.
fn rfc5987(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition() {
        let check = |inline, name: &str, want: &str| {
            assert_eq!(content_disposition(inline, name).to_str().unwrap(), want);
        };
        check(
            false,
            "a.txt",
            "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt",
        );
        check(
            true,
            "Été \"x\"\n.pdf",
            "inline; filename=\"_t_ _x__.pdf\"; filename*=UTF-8''%C3%89t%C3%A9%20%22x%22%0A.pdf",
        );
        check(
            false,
            "a;b\\c%d'e.txt",
            "attachment; filename=\"a;b_c%d'e.txt\"; filename*=UTF-8''a%3Bb%5Cc%25d%27e.txt",
        );
    }

    #[test]
    fn previews() {
        let media = |m: &str| Some(Preview::Media(m.to_owned()));
        assert_eq!(Preview::of("a.PNG"), media("image/png"));
        assert_eq!(Preview::of("a.svg"), media("image/svg+xml"));
        assert_eq!(Preview::of("a.mp4"), media("video/mp4"));
        assert_eq!(Preview::of("a.mp3"), media("audio/mpeg"));
        assert_eq!(Preview::of("a.pdf"), Some(Preview::Pdf));
        for text in [
            "a.html", "a.htm", "a.js", "a.md", "a.rs", "a.json", "a.xml", "a.txt",
        ] {
            assert_eq!(Preview::of(text), Some(Preview::Text), "{text}");
        }
        for none in ["a.exe", "a.zip", "noext", "a.docx", "a.swf"] {
            assert_eq!(Preview::of(none), None, "{none}");
        }
    }
}
