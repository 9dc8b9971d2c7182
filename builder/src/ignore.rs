pub struct Ignore;
