//! YAML documents as trees that remember the line of every node, for `capprof check` to point
//! at the entry it judges (SARIF regions, human reports). Anchors and aliases are resolved by
//! sharing (an alias is the anchored node itself, so a "billion laughs" file costs no memory);
//! `<<` merge keys (compose's `<<: *defaults`) are applied as YAML 1.1 defines them: the
//! mapping's own keys win.

use std::collections::HashMap;
use std::rc::Rc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A node and the line (1-based) it starts on.
#[derive(Debug)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug)]
pub enum Value {
    /// Every scalar as written (`true`, `80`, `null` are strings here; callers interpret).
    Scalar(String),
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>),
}

impl Node {
    /// A mapping's value for `key` (None for other nodes or a missing key).
    pub fn get(&self, key: &str) -> Option<&Rc<Node>> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The line of `key` itself in a mapping (a block mapping value starts on a later line).
    pub fn key_line(&self, key: &str) -> Option<usize> {
        self.entries()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k.line)
    }

    /// A path of keys.
    pub fn at(&self, path: &[&str]) -> Option<&Rc<Node>> {
        let (first, rest) = path.split_first()?;
        let next = self.get(first)?;
        if rest.is_empty() {
            Some(next)
        } else {
            next.at(rest)
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Rc<Node>]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[(Rc<Node>, Rc<Node>)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// YAML 1.1/1.2 booleans as Kubernetes and compose read them.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        }
    }

    /// A list of strings (a scalar alone counts as a one-item list, as compose allows).
    pub fn strings(&self) -> Vec<(String, usize)> {
        match &self.value {
            Value::Scalar(s) if s != "null" && s != "~" && !s.is_empty() => vec![(s.clone(), self.line)],
            Value::Seq(items) => items.iter().filter_map(|i| i.as_str().map(|s| (s.to_string(), i.line))).collect(),
            _ => vec![],
        }
    }
}

/// Builds the trees from the parser's events.
#[derive(Default)]
struct Builder {
    docs: Vec<Rc<Node>>,
    /// Open collections: their line, anchor, and what they hold so far.
    stack: Vec<(usize, usize, Open)>,
    anchors: HashMap<usize, Rc<Node>>,
    /// An alias to an anchor not (or not yet completely) defined.
    error: Option<String>,
}

enum Open {
    Seq(Vec<Rc<Node>>),
    Map(Vec<Rc<Node>>),
}

impl Builder {
    fn push(&mut self, node: Rc<Node>, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some((_, _, Open::Seq(items))) | Some((_, _, Open::Map(items))) => items.push(node),
            None => self.docs.push(node),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, _, anchor, _) => self.push(Rc::new(Node { line, value: Value::Scalar(text) }), anchor),
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push(node, 0),
                None => {
                    self.error.get_or_insert_with(|| format!("line {line}: an alias to an anchor that is not defined before it"));
                    self.push(Rc::new(Node { line, value: Value::Scalar(String::new()) }), 0);
                }
            },
            Event::SequenceStart(anchor, _) => self.stack.push((line, anchor, Open::Seq(Vec::new()))),
            Event::MappingStart(anchor, _) => self.stack.push((line, anchor, Open::Map(Vec::new()))),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((line, anchor, open)) = self.stack.pop() else { return };
                let value = match open {
                    Open::Seq(items) => Value::Seq(items),
                    Open::Map(flat) => Value::Map(merge_keys(flat)),
                };
                self.push(Rc::new(Node { line, value }), anchor);
            }
            _ => {}
        }
    }
}

/// Pairs up a mapping's keys and values and applies `<<` merge keys.
fn merge_keys(flat: Vec<Rc<Node>>) -> Vec<(Rc<Node>, Rc<Node>)> {
    let mut own: Vec<(Rc<Node>, Rc<Node>)> = Vec::new();
    let mut merged: Vec<Rc<Node>> = Vec::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if k.as_str() == Some("<<") {
            match &v.value {
                Value::Seq(items) => merged.extend(items.iter().cloned()),
                _ => merged.push(v),
            }
        } else {
            own.push((k, v));
        }
    }
    for source in merged {
        for (k, v) in source.entries().unwrap_or_default() {
            if !own.iter().any(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str()) {
                own.push((k.clone(), v.clone()));
            }
        }
    }
    own
}

/// Every document of `text`; a syntax error says where.
pub fn parse(text: &str) -> Result<Vec<Rc<Node>>, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text).load(&mut builder, true).map_err(|e| e.to_string())?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_anchors_aliases_and_merge_keys() {
        let text = "x-base: &base\n  cap_drop: [ALL]\n  privileged: false\nservices:\n  web:\n    <<: *base\n    privileged: true\n    cap_add:\n      - NET_BIND_SERVICE\n";
        let docs = parse(text).unwrap();
        let web = docs[0].at(&["services", "web"]).unwrap();
        assert_eq!(web.get("privileged").unwrap().as_bool(), Some(true), "the mapping's own key wins");
        assert_eq!(web.get("cap_drop").unwrap().strings(), [("ALL".to_string(), 2)]);
        assert_eq!(web.get("cap_add").unwrap().strings(), [("NET_BIND_SERVICE".to_string(), 9)]);
        assert_eq!(web.line, 6);
    }

    #[test]
    fn many_documents_and_errors() {
        assert_eq!(parse("a: 1\n---\nb: 2\n").unwrap().len(), 2);
        assert!(parse("a: [1, 2\n").is_err());
        assert!(parse("a: *nowhere\n").is_err());
    }

    #[test]
    fn an_alias_bomb_shares_instead_of_copying() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        let docs = parse(&text).unwrap();
        assert!(docs[0].get("a29").is_some());
    }
}
