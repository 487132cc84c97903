package polarway

// WrapErr lets the external tests map statuses from raw calls the client never makes.
var WrapErr = wrapErr
