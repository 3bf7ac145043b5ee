//! RESP requests, sans I/O: arrays of bulk strings (what every client library and
//! `redis-cli` send) and inline commands (what `nc` or `redis-cli` in a pipe may
//! send), split with quotes as Redis does. Bounds come first, so a frame can never
//! make the caller buffer more than a command's cap.

use std::borrow::Cow;

/// A header line (`*N`, `$N`) longer than this is not a number.
const MAX_COUNT_LINE: usize = 32;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Arguments of one command.
    pub max_args: usize,
    /// The bytes of one command's arguments together, and of an inline line.
    pub max_command: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Need more bytes: at least until the buffer holds `wants`.
    Partial { wants: usize },
    /// One command of `consumed` bytes; no arguments for an empty line or `*0`,
    /// which Redis ignores.
    Command {
        consumed: usize,
        args: Vec<Cow<'a, [u8]>>,
    },
    /// The stream cannot be read further: answer `-ERR Protocol error: reason`, close.
    Invalid { reason: Cow<'static, str> },
}

fn invalid(reason: &'static str) -> Parsed<'static> {
    Parsed::Invalid {
        reason: Cow::Borrowed(reason),
    }
}

/// Parses one command from the start of `buf`.
pub fn parse(buf: &[u8], limits: Limits) -> Parsed<'_> {
    match buf.first() {
        None => Parsed::Partial { wants: 1 },
        Some(b'*') => multibulk(buf, limits),
        Some(_) => inline(buf, limits),
    }
}

/// Where the line starting at `from` ends (its `\r\n`), if it is complete.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// A count after `*` or `$`: an optional minus and digits, as Redis reads it.
fn count(digits: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

/// The count line starting at `from` (after its marker): the number and where the
/// next line starts, `Ok(None)` if incomplete, `Err` once it cannot be a number.
fn count_line(
    buf: &[u8],
    from: usize,
    too_big: &'static str,
) -> Result<Option<(i64, usize)>, Parsed<'static>> {
    let Some(end) = line_end(buf, from) else {
        if buf.len() - from > MAX_COUNT_LINE {
            return Err(invalid(too_big));
        }
        return Ok(None);
    };
    if end - from > MAX_COUNT_LINE {
        return Err(invalid(too_big));
    }
    Ok(Some((count(&buf[from..end]).unwrap_or(i64::MIN), end + 2)))
}

fn multibulk(buf: &[u8], limits: Limits) -> Parsed<'_> {
    let (n, mut pos) = match count_line(buf, 1, "too big mbulk count string") {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Parsed::Partial {
                wants: buf.len() + 1,
            }
        }
        Err(e) => return e,
    };
    if n == i64::MIN || n > limits.max_args as i64 {
        return invalid("invalid multibulk length");
    }
    let n = n.max(0) as usize;
    let mut args = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        match buf.get(pos) {
            None => return Parsed::Partial { wants: pos + 1 },
            Some(b'$') => {}
            Some(&other) => {
                return Parsed::Invalid {
                    reason: Cow::Owned(format!("expected '$', got '{}'", printable(other))),
                }
            }
        }
        let (len, start) = match count_line(buf, pos + 1, "too big bulk count string") {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Parsed::Partial {
                    wants: buf.len() + 1,
                }
            }
            Err(e) => return e,
        };
        if len < 0 || len as u64 > limits.max_command as u64 {
            return invalid("invalid bulk length");
        }
        let len = len as usize;
        total += len;
        if total > limits.max_command {
            return invalid("command larger than --max-message-size");
        }
        let end = start + len;
        if buf.len() < end + 2 {
            return Parsed::Partial { wants: end + 2 };
        }
        if &buf[end..end + 2] != b"\r\n" {
            return invalid("bulk string not followed by CRLF");
        }
        args.push(Cow::Borrowed(&buf[start..end]));
        pos = end + 2;
    }
    Parsed::Command {
        consumed: pos,
        args,
    }
}

fn printable(byte: u8) -> char {
    if byte.is_ascii_graphic() {
        byte as char
    } else {
        '?'
    }
}

fn inline(buf: &[u8], limits: Limits) -> Parsed<'_> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_command {
            return invalid("too big inline request");
        }
        return Parsed::Partial {
            wants: buf.len() + 1,
        };
    };
    if newline > limits.max_command {
        return invalid("too big inline request");
    }
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    match split_args(line) {
        Some(args) if args.len() > limits.max_args => invalid("invalid multibulk length"),
        Some(args) => Parsed::Command {
            consumed: newline + 1,
            args: args.into_iter().map(Cow::Owned).collect(),
        },
        None => invalid("unbalanced quotes in request"),
    }
}

/// Splits an inline line as Redis's `sdssplitargs` does: blanks separate words;
/// "double quotes" take `\n \r \t \b \a \xHH` and `\c`; 'single quotes' take `\'`;
/// a closing quote must end the word. `None` for unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => i = double_quoted(line, i + 1, &mut word)?,
            b'\'' => i = single_quoted(line, i + 1, &mut word)?,
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
}

/// After a closing quote: the position past it, if a blank or the end follows.
fn closed(line: &[u8], quote: usize) -> Option<usize> {
    match line.get(quote + 1) {
        None => Some(quote + 1),
        Some(b) if b.is_ascii_whitespace() => Some(quote + 1),
        Some(_) => None,
    }
}

fn double_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Option<usize> {
    loop {
        match *line.get(i)? {
            b'"' => return closed(line, i),
            b'\\' if line.get(i + 1) == Some(&b'x') => {
                let hex = line
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        word.push(byte);
                        i += 4;
                    }
                    None => {
                        word.push(b'x');
                        i += 2;
                    }
                }
            }
            b'\\' => {
                let escaped = *line.get(i + 1)?;
                word.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'a' => 7,
                    other => other,
                });
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Option<usize> {
    loop {
        match *line.get(i)? {
            b'\'' => return closed(line, i),
            b'\\' if line.get(i + 1) == Some(&b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            byte => {
                word.push(byte);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
