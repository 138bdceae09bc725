//! SQL `LIKE` patterns: `%` matches any run of characters, `_` exactly one.
//!
//! Written by hand rather than compiled to a regex: the grammar is tiny, and
//! the greedy match with one backtrack point below runs in O(pattern × text)
//! whatever the input, so a hostile pattern cannot make a request slow.
//! Tags contain `_`, so `\` escapes a wildcard (`sensor\_01`); matching is
//! case-sensitive, as in PostgreSQL.

/// A parsed `LIKE` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LikePattern(Vec<Token>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `%`: any run, the empty one included.
    Any,
    /// `_`: exactly one character.
    One,
    Literal(char),
}

impl LikePattern {
    /// Parses a pattern; the error says how to fix it.
    pub(crate) fn parse(s: &str) -> Result<LikePattern, String> {
        let mut tokens = Vec::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '%' => Token::Any,
                '_' => Token::One,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => return Err("the pattern ends with a lone `\\`: write `\\\\` for a backslash".into()),
                },
                c => Token::Literal(c),
            };
            // `%%` means the same as `%`; one keeps backtracking linear.
            if !(token == Token::Any && tokens.last() == Some(&Token::Any)) {
                tokens.push(token);
            }
        }
        Ok(LikePattern(tokens))
    }

    /// The text before the first wildcard: every match starts with it.
    pub(crate) fn literal_prefix(&self) -> String {
        self.0
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let pattern = &self.0;
        // Positions: `p` in the pattern, `t` a byte offset in the text.
        let (mut p, mut t) = (0, 0);
        // The last `%` seen and the text offset it currently absorbs up to.
        let mut resume: Option<(usize, usize)> = None;
        loop {
            let next = text[t..].chars().next();
            match (pattern.get(p), next) {
                (Some(Token::Any), _) => {
                    resume = Some((p, t));
                    p += 1;
                    continue;
                }
                (Some(Token::One), Some(c)) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (Some(Token::Literal(l)), Some(c)) if *l == c => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last `%` swallow one more character and retry.
            let Some((star, absorbed)) = resume else { return false };
            let Some(c) = text[absorbed..].chars().next() else { return false };
            let absorbed = absorbed + c.len_utf8();
            resume = Some((star, absorbed));
            p = star + 1;
            t = absorbed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn like(pattern: &str, text: &str) -> bool {
        LikePattern::parse(pattern).unwrap().matches(text)
    }

    #[test]
    fn wildcards() {
        for (pattern, text, want) in [
            ("brasil.%", "brasil.sul.s1", true),
            ("brasil.%", "brasil", false),
            ("%.s1", "brasil.sul.s1", true),
            ("%sul%", "brasil.sul.s1", true),
            ("brasil.___.s1", "brasil.sul.s1", true),
            ("brasil.__.s1", "brasil.sul.s1", false),
            ("%", "", true),
            ("", "", true),
            ("", "x", false),
            ("_", "ç", true),
            ("a%b%c", "aXbYc", true),
            ("a%b%c", "aXcYb", false),
            ("Brasil.%", "brasil.sul", false),
            (r"s\_1", "s_1", true),
            (r"s\_1", "sx1", false),
            (r"100\%", "100%", true),
            (r"100\%", "1000", false),
        ] {
            assert_eq!(like(pattern, text), want, "{pattern} ~ {text}");
        }
        assert!(LikePattern::parse("abc\\").unwrap_err().contains("lone"));
    }

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        let prefix = |p: &str| LikePattern::parse(p).unwrap().literal_prefix();
        assert_eq!(prefix("brasil.%"), "brasil.");
        assert_eq!(prefix("brasil.su_.x"), "brasil.su");
        assert_eq!(prefix(r"a\%b%"), "a%b");
        assert_eq!(prefix("%x"), "");
    }

    /// The definition, by exhaustive recursion: slow but obviously right.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(pattern in "[ab%_é]{0,8}", text in "[abé]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(like(&pattern, &text), reference(&p, &t));
        }

        #[test]
        fn a_literal_pattern_matches_exactly_itself(text in "[a-z._-]{0,12}", other in "[a-z._-]{0,12}") {
            let escaped: String = text.chars().flat_map(|c| if c == '_' { vec!['\\', c] } else { vec![c] }).collect();
            prop_assert!(like(&escaped, &text));
            prop_assert_eq!(like(&escaped, &other), text == other);
        }
    }
}
