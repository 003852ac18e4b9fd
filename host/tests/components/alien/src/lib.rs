//! Test fixture: a well-formed component that is not a `wharf:plugin` component.

wit_bindgen::generate!({
    inline: "package test:alien; world alien { export answer: func() -> u32; }",
    world: "alien",
});

struct Alien;

impl Guest for Alien {
    fn answer() -> u32 {
        42
    }
}

export!(Alien);
