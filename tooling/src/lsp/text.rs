//! Positions: byte offsets in a document against LSP's (line, UTF-16 column) pairs, the
//! token under the cursor, and `file://` URIs against paths.

use lsp_types::{Position, Range, Uri};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The LSP position of a byte offset (clamped to the text and to a char boundary).
pub fn position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let character = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, character as u32)
}

pub fn range(text: &str, offset: usize, len: usize) -> Range {
    Range::new(position(text, offset), position(text, offset + len))
}

/// The byte offset of an LSP position (clamped to its line).
pub fn offset(text: &str, pos: Position) -> usize {
    let mut start = 0;
    for _ in 0..pos.line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let mut units = 0;
    for (i, c) in text[start..line_end].char_indices() {
        if units >= pos.character as usize {
            return start + i;
        }
        units += c.len_utf16();
    }
    line_end
}

/// The whole of a 0-based line, for messages without a column.
pub fn line_range(text: &str, line: usize) -> Range {
    let len = text
        .lines()
        .nth(line)
        .map_or(0, |l| l.encode_utf16().count());
    Range::new(
        Position::new(line as u32, 0),
        Position::new(line as u32, len as u32),
    )
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The path under the cursor (`pkg::upgrade`, `h`, `order`) and its start offset.
pub fn token_at(text: &str, at: usize) -> Option<(usize, &str)> {
    let at = at.min(text.len());
    let is_path = |c: char| is_word(c) || c == ':';
    let start = text[..at]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_path(c))
        .last()
        .map_or(at, |(i, _)| i);
    let end = text[at..]
        .find(|c: char| !is_path(c))
        .map_or(text.len(), |i| at + i);
    let tok = text[start..end].trim_matches(':');
    let start = start + text[start..end].find(tok)?;
    (!tok.is_empty()).then_some((start, tok))
}

/// The identifier that ends just before `end` (after skipping spaces), and where it starts.
pub fn ident_before(text: &str, end: usize) -> Option<(usize, &str)> {
    let trimmed = text[..end].trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word(c))
        .last()
        .map(|(i, _)| i)?;
    Some((start, &trimmed[start..]))
}

pub fn path_of(uri: &Uri) -> Option<PathBuf> {
    let rest = uri.as_str().strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&rest[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
}

pub fn uri_of(path: &Path) -> Option<Uri> {
    let mut s = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "ab\né€𝄞x\n";
        let x = text.find('x').unwrap();
        assert_eq!(position(text, x), Position::new(1, 4));
        assert_eq!(offset(text, Position::new(1, 4)), x);
        assert_eq!(offset(text, Position::new(0, 99)), 2);
    }

    #[test]
    fn tokens_take_the_whole_path() {
        let text = "x = pkg::upgrade(h)";
        assert_eq!(token_at(text, 6), Some((4, "pkg::upgrade")));
        assert_eq!(token_at(text, 13), Some((4, "pkg::upgrade")));
        assert_eq!(token_at(text, 5), Some((4, "pkg::upgrade")));
    }

    #[test]
    fn uris_round_trip() {
        let p = Path::new("/tmp/a b/ü.rhai");
        assert_eq!(path_of(&uri_of(p).unwrap()).unwrap(), p);
    }
}
