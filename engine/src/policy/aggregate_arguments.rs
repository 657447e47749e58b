//! Rule: the argument of an aggregate over aggregate-only data is the field
//! itself. (Filled in below.)
