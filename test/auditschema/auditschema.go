// Package auditschema checks XML documents against the DICOM audit message schema (PS3.15
// A.5.1, in its form since CP-1638), for tests: the elements each element may hold and in what
// order and number, the attributes each must and may have, and the values of the enumerated
// ones. No validator of the schema's Relax NG is packaged for Debian without a Java runtime,
// so this is a transcription of the schema's rules, element by element.
package auditschema

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// node is an element read from the document.
type node struct {
	name  string
	attrs map[string]string
	kids  []*node
	text  string
	path  string
}

// Check reads doc (an optional UTF-8 byte order mark, then one XML document) and returns an
// error naming the first place it breaks the schema, or nil.
func Check(doc []byte) error {
	root, err := parse(bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf")))
	if err != nil {
		return err
	}
	if root.name != "AuditMessage" {
		return fmt.Errorf("the root element is %s, want AuditMessage", root.name)
	}
	rules := schema()
	return check(root, rules["AuditMessage"], rules)
}

// parse reads the document's root element.
func parse(doc []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	var stack []*node
	var root *node
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name.Local, attrs: map[string]string{}}
			for _, a := range t.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("the document has two root elements")
				}
				root, n.path = n, "/"+n.name
			} else {
				parent := stack[len(stack)-1]
				parent.kids = append(parent.kids, n)
				n.path = fmt.Sprintf("%s/%s[%d]", parent.path, n.name, len(parent.kids))
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
	if root == nil {
		return nil, errors.New("the document has no element")
	}
	return root, nil
}

// child is an element an element may hold: its name, how many (min, max; -1 is unbounded) and
// its rule.
type child struct {
	name     string
	min, max int
	rule     string
}

// rule is what an element may be: its children in order, its attributes (required and
// optional, with a check of the value), and whether it has text.
type rule struct {
	children []child
	required map[string]func(string) error
	optional map[string]func(string) error
	text     func(string) error
	// oneOf names children of which at most one may be present (the schema's choices).
	oneOf []string
}

// check checks n, and its children, against r; rules are the rules of the children.
func check(n *node, r rule, rules map[string]rule) error {
	for name, valid := range r.required {
		v, ok := n.attrs[name]
		if !ok {
			return fmt.Errorf("%s: attribute %s is required", n.path, name)
		}
		if err := valid(v); err != nil {
			return fmt.Errorf("%s: attribute %s: %w", n.path, name, err)
		}
	}
	for name, v := range n.attrs {
		if _, ok := r.required[name]; ok {
			continue
		}
		valid, ok := r.optional[name]
		if !ok {
			return fmt.Errorf("%s: attribute %s is not in the schema", n.path, name)
		}
		if err := valid(v); err != nil {
			return fmt.Errorf("%s: attribute %s: %w", n.path, name, err)
		}
	}
	if r.text != nil {
		if err := r.text(n.text); err != nil {
			return fmt.Errorf("%s: %w", n.path, err)
		}
	} else if strings.TrimSpace(n.text) != "" {
		return fmt.Errorf("%s: text is not allowed here", n.path)
	}
	present := 0
	for _, name := range r.oneOf {
		if slices.ContainsFunc(n.kids, func(k *node) bool { return k.name == name }) {
			present++
		}
	}
	if present > 1 {
		return fmt.Errorf("%s: only one of %v may be present", n.path, r.oneOf)
	}
	i := 0
	for _, c := range r.children {
		count := 0
		for i < len(n.kids) && n.kids[i].name == c.name {
			if err := check(n.kids[i], rules[c.rule], rules); err != nil {
				return err
			}
			count++
			i++
		}
		if count < c.min || (c.max >= 0 && count > c.max) {
			return fmt.Errorf("%s: %d %s elements where they belong, want %d to %d", n.path, count, c.name, c.min, c.max)
		}
	}
	if i < len(n.kids) {
		return fmt.Errorf("%s: element %s is not in the schema here (wrong name or order)", n.kids[i].path, n.kids[i].name)
	}
	return nil
}

// anyValue accepts every value.
func anyValue(string) error { return nil }

// oneOfValues accepts the given values.
func oneOfValues(values ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("%q is not one of %v", v, values)
		}
		return nil
	}
}

// token accepts an xsd:token that is not empty.
func token(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty")
	}
	return nil
}

// dateTime accepts an xsd:dateTime with a time zone (A.5.2.5 requires one).
func dateTime(v string) error {
	_, err := time.Parse(time.RFC3339Nano, v)
	return err
}

// boolean accepts an xsd:boolean.
func boolean(v string) error { return oneOfValues("true", "false", "1", "0")(v) }

// integer accepts an xsd:integer.
func integer(v string) error {
	_, err := strconv.Atoi(v)
	return err
}

// base64Binary accepts xsd:base64Binary.
func base64Binary(v string) error {
	_, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	return err
}

// numbers are the decimal numbers from..to as strings.
func numbers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// attrs is a map of attribute checks.
type attrs = map[string]func(string) error

// schema is the schema's rules by element kind.
func schema() map[string]rule {
	return map[string]rule{
		"AuditMessage": {children: []child{
			{"EventIdentification", 1, 1, "EventIdentification"},
			{"ActiveParticipant", 1, -1, "ActiveParticipant"},
			{"AuditSourceIdentification", 1, 1, "AuditSourceIdentification"},
			{"ParticipantObjectIdentification", 0, -1, "ParticipantObjectIdentification"},
		}},
		"EventIdentification": {
			children: []child{
				{"EventID", 1, 1, "coded"},
				{"EventTypeCode", 0, -1, "coded"},
				{"EventOutcomeDescription", 0, 1, "text"},
				{"PurposeOfUse", 0, -1, "coded"},
			},
			required: attrs{"EventDateTime": dateTime, "EventOutcomeIndicator": oneOfValues("0", "4", "8", "12")},
			optional: attrs{"EventActionCode": oneOfValues("C", "R", "U", "D", "E")},
		},
		"coded": {
			required: attrs{"csd-code": token, "codeSystemName": token, "originalText": token},
			optional: attrs{"displayName": anyValue},
		},
		"text": {text: anyValue},
		"ActiveParticipant": {
			children: []child{{"RoleIDCode", 0, -1, "coded"}, {"MediaIdentifier", 0, 1, "MediaIdentifier"}},
			required: attrs{"UserID": anyValue, "UserIsRequestor": boolean},
			optional: attrs{"AlternativeUserID": anyValue, "UserName": anyValue, "NetworkAccessPointID": token,
				"NetworkAccessPointTypeCode": oneOfValues(numbers(1, 5)...)},
		},
		"MediaIdentifier": {children: []child{{"MediaType", 1, 1, "coded"}}},
		"AuditSourceIdentification": {
			children: []child{{"AuditSourceTypeCode", 0, -1, "coded"}},
			required: attrs{"AuditSourceID": token},
			optional: attrs{"AuditEnterpriseSiteID": anyValue},
		},
		"ParticipantObjectIdentification": {
			children: []child{
				{"ParticipantObjectIDTypeCode", 1, 1, "coded"},
				{"ParticipantObjectName", 0, 1, "text"},
				{"ParticipantObjectQuery", 0, 1, "base64"},
				{"ParticipantObjectDetail", 0, -1, "ParticipantObjectDetail"},
				{"ParticipantObjectDescription", 0, -1, "ParticipantObjectDescription"},
			},
			oneOf:    []string{"ParticipantObjectName", "ParticipantObjectQuery"},
			required: attrs{"ParticipantObjectID": token},
			optional: attrs{
				"ParticipantObjectTypeCode":      oneOfValues(numbers(1, 4)...),
				"ParticipantObjectTypeCodeRole":  oneOfValues(numbers(1, 26)...),
				"ParticipantObjectDataLifeCycle": oneOfValues(numbers(1, 15)...),
				"ParticipantObjectSensitivity":   anyValue,
			},
		},
		"base64":                  {text: base64Binary},
		"ParticipantObjectDetail": {required: attrs{"type": token, "value": base64Binary}},
		"ParticipantObjectDescription": {children: []child{
			{"MPPS", 0, -1, "UID"},
			{"Accession", 0, -1, "Accession"},
			{"SOPClass", 0, -1, "SOPClass"},
			{"ParticipantObjectContainsStudy", 0, 1, "ContainsStudy"},
			{"Encrypted", 0, 1, "boolean"},
			{"Anonymized", 0, 1, "boolean"},
		}},
		"UID":           {required: attrs{"UID": token}},
		"Accession":     {required: attrs{"Number": token}},
		"SOPClass":      {children: []child{{"Instance", 0, -1, "UID"}}, required: attrs{"NumberOfInstances": integer}, optional: attrs{"UID": token}},
		"ContainsStudy": {children: []child{{"StudyIDs", 0, -1, "UID"}}},
		"boolean":       {text: boolean},
	}
}
