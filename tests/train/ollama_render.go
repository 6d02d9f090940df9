// Renders Ollama TEMPLATEs the way Ollama does for a chat (Go's text/template over .System and .Messages,
// missing keys as zero values), for tests/train/test_export_ollama.py. Input on stdin: a JSON list of
// {"template", "system", "messages"}; output: a JSON list of the rendered prompts.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []message `json:"messages"`
}

func main() {
	var requests []request
	if err := json.NewDecoder(os.Stdin).Decode(&requests); err != nil {
		panic(err)
	}
	rendered := []string{}
	for _, r := range requests {
		t := template.Must(template.New("").Option("missingkey=zero").Parse(r.Template))
		var out strings.Builder
		data := map[string]any{"System": r.System, "Messages": r.Messages, "Response": ""}
		if err := t.Execute(&out, data); err != nil {
			panic(err)
		}
		rendered = append(rendered, out.String())
	}
	if err := json.NewEncoder(os.Stdout).Encode(rendered); err != nil {
		panic(err)
	}
}
