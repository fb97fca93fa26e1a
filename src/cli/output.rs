//! What a command prints: human lines by default, exactly one JSON document with `--json`.

pub struct Output {
    json: bool,
    lines: Vec<String>,
    document: Option<serde_json::Value>,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            lines: Vec::new(),
            document: None,
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A line of the human answer (ignored with `--json`).
    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// The JSON answer (ignored without `--json`).
    pub fn document(&mut self, value: serde_json::Value) {
        self.document = Some(value);
    }

    pub fn flush(self) {
        if self.json {
            println!("{}", self.document.unwrap_or(serde_json::Value::Null));
        } else {
            for line in self.lines {
                println!("{line}");
            }
        }
    }
}
