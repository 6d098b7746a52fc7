package dcmjson

import "encoding/json"

// ItemFilter picks, from its raw bytes, a sequence item that Walk decodes and visits.
type ItemFilter func(raw json.RawMessage) bool

// Walk calls fn for every element of d that is not null and, depth first, for the elements
// of the sequence items fn asks for. It is the one recursive walk over DICOM JSON: anything
// that must reach every level of nesting goes through it.
//
// fn is given the dataset that holds the element, so that it may change el in place or
// delete tag from ds; an element it adds may or may not be visited.
//
// For an element of VR SQ, what fn returns says which items to visit: nil visits none;
// otherwise each item that is not null and that the filter accepts is decoded, walked with
// the same fn and written back as json.Marshal encodes it. An item that does not decode as
// a DICOM JSON object becomes an empty object. Items the filter refuses keep their bytes,
// so a filter that looks for what fn would change saves decoding every other item. What fn
// returns for any other VR is ignored.
func (d Dataset) Walk(fn func(ds Dataset, tag string, el *Element) ItemFilter) {
	for tag, el := range d {
		if el == nil {
			continue
		}
		want := fn(d, tag, el)
		if want == nil || el.VR != "SQ" {
			continue
		}
		for i, raw := range el.Value {
			if isJSONNull(raw) || !want(raw) {
				continue
			}
			el.Value[i] = walkItem(raw, fn)
		}
	}
}

// walkItem decodes one sequence item, walks it and returns it encoded again, or an empty
// object when it is not a DICOM JSON object.
func walkItem(raw json.RawMessage, fn func(ds Dataset, tag string, el *Element) ItemFilter) json.RawMessage {
	var item Dataset
	if json.Unmarshal(raw, &item) != nil || item == nil {
		return json.RawMessage(`{}`)
	}
	item.Walk(fn)
	enc, err := json.Marshal(item)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return enc
}
