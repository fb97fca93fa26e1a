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

    /// Labelled values, one per line, the values aligned: `Status:   active`.
    pub fn fields(&mut self, rows: &[(&str, String)]) {
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
        for (label, value) in rows {
            self.line(format!("{:<width$}  {value}", format!("{label}:")));
        }
    }

    /// A table with a header row, columns aligned; the last column is not padded.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let render = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == last {
                        (*cell).to_owned()
                    } else {
                        format!("{cell:<width$}", width = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        self.line(render(header.to_vec()));
        for row in rows {
            self.line(render(row.iter().map(String::as_str).collect()));
        }
    }

    /// The JSON answer (ignored without `--json`).
    pub fn document(&mut self, value: serde_json::Value) {
        self.document = Some(value);
    }

    pub fn flush(self) {
        if self.json {
            // Every command sets its document; a failure before that prints nothing.
            if let Some(document) = self.document {
                println!("{document}");
            }
        } else {
            for line in self.lines {
                println!("{line}");
            }
        }
    }
}
