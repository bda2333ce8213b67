//! Embedding text that came from outside (container names and labels, images, commands,
//! program names a process chose itself with `prctl(PR_SET_NAME)`) into outputs: for a
//! terminal or a one-line comment ([`plain`]) and for a shell ([`shell_line`]). YAML values go
//! through the serializer, which quotes them; only comments are built by hand.

use std::fmt::Write as _;

/// `s` as one line of inert text: line breaks, tabs, every other control character (C0, DEL,
/// C1, so no terminal escape sequence survives), the Unicode line and paragraph separators
/// (line breaks to YAML 1.1 parsers) and the bidirectional controls (which reorder what a
/// reader sees) written as escapes.
pub fn plain(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// [`plain`] for a whole multi-line text: every line break stays, everything else is escaped.
pub fn plain_lines(text: &str) -> String {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return text.to_string();
    }
    text.split('\n').map(plain).collect::<Vec<_>>().join("\n")
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One word for a POSIX shell: bare when it is made only of characters no shell treats
/// specially anywhere in a word, else single-quoted (a quote inside as `'\''`). A line break
/// inside quotes is a literal line break to the shell.
pub fn shell_word(word: &str) -> String {
    let bare = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if bare {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A command line a shell splits back into exactly `argv`.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_one_inert_line() {
        assert_eq!(plain("web"), "web");
        assert_eq!(plain("a\nb"), "a\\nb");
        assert_eq!(plain("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(plain("x\u{2028}y\u{202e}z\u{85}"), "x\\u{2028}y\\u{202e}z\\u{85}");
        assert_eq!(plain_lines("ok\n\u{1b}]0;title\u{7}\n"), "ok\n\\u{1b}]0;title\\u{7}\n");
    }

    #[test]
    fn shell_words_are_quoted_when_a_shell_would_see_more() {
        assert_eq!(shell_line(&["sh".into(), "-c".into(), "a && b".into()]), "sh -c 'a && b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        for special in ["", "#x", "~root", "a{b,c}", "*", "[a]", "!x", "$HOME", "a\nb", "é"] {
            assert!(shell_word(special).starts_with('\''), "{special:?}");
        }
        assert_eq!(shell_word("--cap-add=NET_RAW"), "--cap-add=NET_RAW");
    }
}
