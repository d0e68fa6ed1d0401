-- The gateway's one Lua service, loaded by the haproxy.cfg that gateway/config.py plans.
-- `http-request use-service lua.reply` sends the reply that the config put in transaction
-- variables: txn.reply_status, txn.reply_type and txn.reply_body (already formatted).
--
-- It does what `http-request return` does, except for a request whose body has not arrived
-- yet: HAProxy 2.6 (Debian 12) sends its own reply and closes the connection with that body
-- unread, so the kernel resets the connection, and a client that writes its whole body before it
-- reads (Python's http.client, urllib, httpx) gets "broken pipe" or "connection reset" instead
-- of the reply. After a service's reply, HAProxy reads the rest of the body and drops it, and the
-- connection serves the next request. (HAProxy 3.0 drains after its own replies too.)

core.register_service("reply", "http", function(applet)
    local body = applet:get_var("txn.reply_body")
    applet:set_status(applet:get_var("txn.reply_status"))
    applet:add_header("content-type", applet:get_var("txn.reply_type"))
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
end)
