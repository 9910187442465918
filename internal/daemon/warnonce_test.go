package daemon

import (
	"slices"
	"testing"
)

func TestWarned(t *testing.T) {
	w := warned[int]{}
	id := func(i int) int { return i }
	step := func(now []int, within func(int) bool, began []int, ended []int, held ...int) {
		t.Helper()
		b, e := update(w, now, id, within)
		slices.Sort(e)
		if !slices.Equal(b, began) || !slices.Equal(e, ended) {
			t.Fatalf("update(%v) = %v, %v; want %v, %v", now, b, e, began, ended)
		}
		var got []int
		for k := range w {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, held) {
			t.Fatalf("held %v, want %v", got, held)
		}
	}
	step(nil, nil, nil, nil)
	step([]int{1, 2}, nil, []int{1, 2}, nil, 1, 2)
	step([]int{2, 3}, nil, []int{3}, []int{1}, 2, 3)
	step([]int{2, 3}, nil, nil, nil, 2, 3)
	odd := func(k int) bool { return k%2 == 1 }
	step(nil, odd, nil, []int{3}, 2) // 2 is outside and held
	step([]int{5}, odd, []int{5}, nil, 2, 5)
	step(nil, nil, nil, []int{2, 5})

	e := warned[string]{}
	for _, c := range []struct {
		msg          string
		began, ended bool
		held         string
	}{
		{"", false, false, ""}, {"a", true, false, "a"}, {"a", false, false, "a"},
		{"b", true, true, "b"}, {"", false, true, ""}, {"", false, false, ""},
	} {
		b, ended := updateErr(e, c.msg)
		if b != c.began || ended != c.ended || message(e) != c.held {
			t.Fatalf("updateErr(%q) = %v, %v, held %q; want %v, %v, %q", c.msg, b, ended, message(e), c.began, c.ended, c.held)
		}
	}
}
