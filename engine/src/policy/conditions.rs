//! Rule: protected values never decide which rows count. (Filled in below.)
