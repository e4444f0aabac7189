//! The functions a Rhai library defines, read from its text with their `///` doc comments:
//! what `fleetbook doc` prints and what the language server shows on hover. A scan rather
//! than Rhai's parser, so a file with a syntax error still has its definitions.

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// `name(a, b)`.
    pub signature: String,
    pub doc: String,
    /// Byte offset of the name.
    pub offset: usize,
    /// The parameter names.
    pub params: Vec<String>,
    /// `private fn`: not exported, so not shown by `fleetbook doc`.
    pub private: bool,
}

impl Function {
    /// The doc without its ```rhai examples.
    pub fn prose(&self) -> String {
        let mut out = Vec::new();
        let mut in_example = false;
        for line in self.doc.lines() {
            if line.trim_start().starts_with("```") {
                in_example = !in_example;
            } else if !in_example {
                out.push(line);
            }
        }
        out.join("\n").trim().to_string()
    }

    /// The ```rhai examples of the doc, each a complete runbook.
    pub fn examples(&self) -> Vec<String> {
        examples(&self.doc)
    }
}

/// The ```rhai fenced blocks of a doc text.
pub fn examples(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let t = line.trim_start();
        match (&mut current, t.starts_with("```")) {
            (None, true) if t.starts_with("```rhai") => current = Some(String::new()),
            (Some(_), true) => out.extend(current.take()),
            (Some(text), false) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// The exported functions of a library text, in the order written.
pub fn exported(text: &str) -> Vec<Function> {
    functions(text).into_iter().filter(|f| !f.private).collect()
}

pub fn functions(text: &str) -> Vec<Function> {
    let mut out = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(d) = trimmed.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d).trim_end());
        } else {
            let rest = trimmed.strip_prefix("private ").unwrap_or(trimmed);
            let skipped = trimmed.len() - rest.len();
            if let Some(after) = rest.strip_prefix("fn ") {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let params = after[name.len()..]
                    .trim_start()
                    .strip_prefix('(')
                    .and_then(|p| p.split_once(')'))
                    .map(|(p, _)| p.trim());
                if let (false, Some(params)) = (name.is_empty(), params) {
                    out.push(Function {
                        params: params
                            .split(',')
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty())
                            .collect(),
                        private: skipped > 0,
                        signature: format!("{name}({params})"),
                        name,
                        doc: doc.join("\n"),
                        offset: offset + indent + skipped + 3,
                    });
                }
            }
            doc.clear();
        }
        offset += line.len();
    }
    out
}
