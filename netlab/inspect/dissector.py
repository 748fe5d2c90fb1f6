"""A Wireshark Lua dissector for netlab, generated from the scapy layers so the two cannot drift.

How this works: :func:`generate_dissector` walks the ``fields_desc`` of the
layers in :mod:`netlab.inspect.layers` (the ``length`` framing's frame and
bodies, and the sequenced-UDP header) and writes, for each layer, Lua
``ProtoField`` declarations and a function that reads those fields in order
(sizes, enums, flag bits, length and count links all come from the scapy
fields). A fixed Lua part then ties them together: TCP reassembly of
``length`` frames across segments, the ``line``, ``ack`` and ``raw`` framings
(text formats with no scapy layer), the UDP header with a frame inside a
whole-message DATA datagram, and Info column summaries in the words of
``netlab capture`` (``EXEC id=1 "ls"``, ``STDOUT 12 B``, ``EXIT 0``). The port
and framing are preferences (``netlab.tcp_port``, ``netlab.udp_port``,
``netlab.framing``) whose defaults are the options given here.
"""

from __future__ import annotations

import os
from typing import Any

from scapy.fields import (
    EnumField,
    FieldLenField,
    FlagsField,
    PacketListField,
    StrField,
    StrFixedLenField,
    StrLenField,
)
from scapy.packet import Packet

from netlab.errors import UsageError
from netlab.files import atomic_file
from netlab.inspect.layers import (
    BODY_LAYERS,
    DATAGRAM_TYPES,
    EXIT_FLAG_NAMES,
    MESSAGE_TYPES,
    NetlabArgument,
    NetlabFrame,
    NetlabSackBlock,
    NetlabSequencing,
)
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.seq.wire import HEADER_SIZE

#: Wireshark's personal plugin folder on Linux and macOS (Windows: %APPDATA%\\Wireshark\\plugins).
PLUGIN_DIRECTORY = os.path.join("~", ".local", "lib", "wireshark", "plugins")
PLUGIN_FILE = "netlab.lua"
_INTEGER_TYPES = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}


def generate_dissector(tcp_port: int, udp_port: int, framing: str = "length") -> str:
    """The Lua dissector text.

    Args:
        tcp_port: the TCP port (either direction) whose payload is netlab traffic.
        udp_port: the UDP port whose datagrams carry the sequencing header.
        framing: the framing on the TCP port: one of raw, ack, line, length.
    Raises:
        UsageError: an unknown framing or a port out of range.
    """
    if framing not in FRAMING_NAMES:
        raise UsageError(f"unknown framing {framing!r}: give one of {', '.join(FRAMING_NAMES)}")
    for port in (tcp_port, udp_port):
        if not 0 < port < 65536:
            raise UsageError(f"port {port} is out of range: give 1-65535")
    layers: list[type[Packet]] = [NetlabFrame, NetlabArgument, *dict.fromkeys(BODY_LAYERS.values()),
                                  NetlabSackBlock, NetlabSequencing]
    fields: list[str] = []
    functions: list[str] = []
    for layer in layers:
        declared, function = _layer_lua(layer)
        fields += declared
        functions.append(function)
    bodies = "\n".join(f"  [{number}] = dissect_{BODY_LAYERS[number].__name__}," for number in sorted(BODY_LAYERS))
    names = "\n".join(f'  [{number}] = "{name}",' for number, name in sorted(MESSAGE_TYPES.items()))
    return _TEMPLATE.format(
        tcp_port=tcp_port,
        udp_port=udp_port,
        framing=framing,
        framings=", ".join(f'"{name}"' for name in FRAMING_NAMES),
        framing_choices=", ".join(f'{{{number}, "{name}", {number}}}' for number, name in enumerate(FRAMING_NAMES, 1)),
        message_names=names,
        fields="\n".join(fields),
        field_list=", ".join(_field_variables(layers)),
        functions="\n\n".join(functions),
        bodies=bodies,
        signaled=_exit_flag("SIGNALED"),
        no_status=_exit_flag("NO_STATUS"),
        timed_out=_exit_flag("TIMED_OUT"),
        sequencing_header_size=HEADER_SIZE,
        datagram_types=", ".join(f'[{number}] = "{name}"' for number, name in sorted(DATAGRAM_TYPES.items())),
    )


def install_dissector(text: str, directory: str | None = None) -> str:
    """Write the dissector as ``netlab.lua`` in Wireshark's personal plugin folder; return the path.

    Raises:
        UsageError: the folder cannot be created or written.
    """
    folder = os.path.expanduser(directory or PLUGIN_DIRECTORY)
    path = os.path.join(folder, PLUGIN_FILE)
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_file(path) as stream:  # whole or not at all: Wireshark never loads half a plugin
            stream.write(text.encode())
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; print it with 'netlab dissector > FILE' "
                         "and copy it into Wireshark's plugin folder yourself") from None
    return path


def _exit_flag(name: str) -> str:
    return f"{1 << EXIT_FLAG_NAMES.index(name):#04x}"


def _prefix(layer: type[Packet]) -> str:
    return layer.__name__.removeprefix("Netlab").lower()


def _variable(layer: type[Packet], field: Any) -> str:
    return f"f_{_prefix(layer)}_{field.name}"


def _field_variables(layers: list[type[Packet]]) -> list[str]:
    variables = []
    for layer in layers:
        for field in layer.fields_desc:
            if isinstance(field, PacketListField):
                continue
            variables.append(_variable(layer, field))
            if isinstance(field, FlagsField):
                variables += [f"{_variable(layer, field)}_{name.lower()}" for name in field.names]
    return variables


def _layer_lua(layer: type[Packet]) -> tuple[list[str], str]:
    """ProtoField declarations and ``dissect_<Layer>(buffer, tree, offset, stop)`` for one scapy layer."""
    prefix = _prefix(layer)
    declarations: list[str] = []
    body: list[str] = []
    links = {field.count_of or field.length_of: field.name for field in layer.fields_desc
             if isinstance(field, FieldLenField)}
    for field in layer.fields_desc:
        variable = _variable(layer, field)
        abbreviation = f"netlab.{prefix}.{field.name}"
        if isinstance(field, PacketListField):
            count = links.get(field.name)
            child = field.cls.__name__
            if count is None:
                raise ValueError(f"{layer.__name__}.{field.name}: a packet list needs a count field")
            body.append(f"  for _ = 1, values.{count} do\n"
                        f"    if offset >= stop then break end\n"
                        f"    offset = dissect_{child}(buffer, subtree, offset, stop)\n"
                        f"  end")
            continue
        if isinstance(field, StrFixedLenField):
            size = field.length_from(None)  # type: ignore[arg-type]  # a fixed length ignores the packet
            declarations.append(f'local {variable} = ProtoField.bytes("{abbreviation}", "{field.name}")')
            body.append(_read(variable, f"{size}", field.name, "bytes"))
        elif isinstance(field, StrLenField):
            length = links.get(field.name)
            if length is None:
                raise ValueError(f"{layer.__name__}.{field.name}: a length-prefixed string needs its length field")
            declarations.append(f'local {variable} = ProtoField.string("{abbreviation}", "{field.name}")')
            body.append(_read(variable, f"values.{length}", field.name, "string"))
        elif isinstance(field, StrField):
            declarations.append(f'local {variable} = ProtoField.bytes("{abbreviation}", "{field.name}")')
            body.append(_read(variable, "stop - offset", field.name, "bytes", to_end=True))
        else:
            size = int(field.sz)
            kind = _INTEGER_TYPES[size]
            display = "base.HEX" if type(field).__name__.startswith("X") else "base.DEC"
            table = "nil"
            if isinstance(field, EnumField):
                names = sorted((field.i2s or {}).items())
                table = "{" + ", ".join(f'[{number}] = "{name}"' for number, name in names) + "}"
            if isinstance(field, FlagsField):
                display = "base.HEX"
            declarations.append(f'local {variable} = ProtoField.{kind}("{abbreviation}", "{field.name}", {display}, '
                                f"{table})")
            if isinstance(field, FlagsField):
                for bit, name in enumerate(field.names):
                    declarations.append(f'local {variable}_{name.lower()} = ProtoField.bool("{abbreviation}.'
                                        f'{name.lower()}", "{name}", {size * 8}, nil, {1 << bit:#x})')
                flags = ", ".join(f'{{{1 << bit:#x}, "{name}"}}' for bit, name in enumerate(field.names))
                body.append(_read(variable, str(size), field.name, "uint", bits=[
                    f"{variable}_{name.lower()}" for name in field.names]))
                body.append(f"  values.{field.name}_names = flag_names(values.{field.name}, {{{flags}}})")
            else:
                body.append(_read(variable, str(size), field.name, "uint64" if size == 8 else "uint"))
    function = (
        f"local function dissect_{layer.__name__}(buffer, tree, offset, stop)\n"
        f'  local subtree = tree:add(netlab, buffer(offset, stop - offset), "{layer.name}")\n'
        f"  local values = {{}}\n"
        + "\n".join(body)
        + "\n  return offset, values\nend"
    )
    return declarations, function


def _read(variable: str, size: str, name: str, kind: str, to_end: bool = False,
          bits: list[str] | None = None) -> str:
    """Lua that reads one field: stop quietly when the bytes run out (a frame cut short)."""
    lines = [f"  local {name}_size = {size}",
             f"  if {name}_size < 0 or offset + {name}_size > stop then return offset, values end"]
    if to_end:
        lines = [f"  local {name}_size = {size}"]
    lines.append(f"  if {name}_size == 0 then values.{name} = ByteArray.new() return offset, values end"
                 if to_end else "")
    lines.append(f"  local {name}_item = subtree:add({variable}, buffer(offset, {name}_size))")
    if kind == "uint":
        lines.append(f"  values.{name} = buffer(offset, {name}_size):uint()")
    elif kind == "uint64":
        lines.append(f"  values.{name} = buffer(offset, {name}_size):uint64()")
    elif kind == "string":
        lines.append(f"  values.{name} = buffer(offset, {name}_size):string()")
    else:
        lines.append(f"  values.{name} = buffer(offset, {name}_size):bytes()")
    lines = [line for line in lines if line]
    for bit in bits or []:
        lines.append(f"  {name}_item:add({bit}, buffer(offset, {name}_size))")
    lines.append(f"  offset = offset + {name}_size")
    return "\n".join(lines)


_TEMPLATE = """\
-- netlab dissector for Wireshark and tshark. Generated by 'netlab dissector' from
-- netlab's scapy layers: do not edit; generate it again after netlab changes.
-- Install: copy into ~/.local/lib/wireshark/plugins/ (or 'netlab dissector --install'),
-- or run tshark -X lua_script:netlab.lua -r capture.pcap
-- Preferences: netlab.tcp_port, netlab.udp_port, netlab.framing ({framings}).

local netlab = Proto("netlab", "netlab command service")
local DEFAULT_TCP_PORT = {tcp_port}
local DEFAULT_UDP_PORT = {udp_port}
local SEQUENCING_HEADER_SIZE = {sequencing_header_size}
local DEFAULT_FRAMING = "{framing}"
local FRAMINGS = {{ {framing_choices} }}
local FRAMING_BY_NUMBER = {{ {framings} }}
local MESSAGE_NAMES = {{
{message_names}
}}
-- The largest frame believed; anything bigger is not netlab traffic.
local MAX_FRAME = 64 * 1024 * 1024

{fields}
local f_text = ProtoField.string("netlab.text", "text")
local f_summary = ProtoField.string("netlab.summary", "summary")

netlab.fields = {{ {field_list}, f_text, f_summary }}

local function framing_number(name)
  for index, choice in ipairs(FRAMING_BY_NUMBER) do
    if choice == name then return index end
  end
  return 4
end

netlab.prefs.tcp_port = Pref.uint("TCP port", DEFAULT_TCP_PORT, "TCP port of the netlab server")
netlab.prefs.udp_port = Pref.uint("UDP port", DEFAULT_UDP_PORT, "UDP port of the netlab server (sequenced UDP)")
netlab.prefs.framing = Pref.enum("Framing", framing_number(DEFAULT_FRAMING), "Framing on the TCP port",
                                 FRAMINGS, false)

-- Plain arithmetic, so the file runs on any Lua Wireshark embeds (5.1 to 5.4).
local function has_bit(value, bit)
  return math.floor(value / bit) % 2 == 1
end

local function flag_names(value, bits)
  local names = {{}}
  for _, bit in ipairs(bits) do
    if has_bit(value, bit[1]) then names[#names + 1] = bit[2] end
  end
  return table.concat(names, ",")
end

{functions}

local BODIES = {{
{bodies}
}}

-- One line per message, in the words of 'netlab capture'.
local function describe(message_type, values)
  local name = MESSAGE_NAMES[message_type] or ("type " .. message_type)
  if name == "REQUEST" then
    local line = values.line and values.line:raw() or ""
    line = (line:gsub("\\n$", ""))  -- netlab's client ends the line with a newline (docs/protocol.md)
    return string.format('EXEC id=%d "%s"', values.request_id or 0, line)
  elseif name == "STDOUT" or name == "STDERR" then
    return string.format("%s %d B", name, values.data and values.data:len() or 0)
  elseif name == "EXIT" then
    local flags = values.flags or 0
    local text
    if has_bit(flags, {signaled}) then text = "EXIT signal " .. (values.code or 0)
    elseif has_bit(flags, {no_status}) then text = "EXIT (no status)"
    else text = "EXIT " .. (values.code or 0) end
    if has_bit(flags, {timed_out}) then text = text .. " timed out" end
    return text
  elseif name == "ERROR" then
    return "ERROR " .. (values.message and values.message:raw() or "")
  end
  return name
end

-- length framing: 4-byte length (type + body), type byte, body; frames may span segments.
local function dissect_length_frames(buffer, pinfo, tree, offset, desegment)
  local total = buffer:len()
  local summaries = {{}}
  while offset < total do
    local left = total - offset
    if left < 4 then
      if desegment then
        pinfo.desegment_offset = offset
        pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
        return summaries, nil
      end
      break
    end
    local frame_length = buffer(offset, 4):uint()
    if frame_length < 1 or frame_length > MAX_FRAME then
      tree:add(f_text, buffer(offset, left), "not a netlab length frame")
      return summaries, offset
    end
    if left < 4 + frame_length then
      if desegment then
        pinfo.desegment_offset = offset
        pinfo.desegment_len = 4 + frame_length - left
        return summaries, nil
      end
      break
    end
    local stop = offset + 4 + frame_length
    local _, header = dissect_NetlabFrame(buffer, tree, offset, offset + 5)
    local body = BODIES[header.type]
    local values = {{}}
    if body then _, values = body(buffer, tree, offset + 5, stop) end
    local summary = describe(header.type, values)
    tree:add(f_summary, buffer(offset, stop - offset), summary)
    summaries[#summaries + 1] = summary
    offset = stop
  end
  return summaries, offset
end

local function quoted(text)
  text = text:gsub("\\r?\\n$", "")
  return text
end

-- line framing: commands one per line; replies '1 ', '2 ', '1-', '2-', '= exit ...', '! error'.
local function dissect_lines(buffer, pinfo, tree, to_server)
  local total = buffer:len()
  local text = buffer():raw()
  local summaries = {{}}
  local offset = 0
  while offset < total do
    local newline = text:find("\\n", offset + 1, true)
    if not newline then
      pinfo.desegment_offset = offset
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return summaries
    end
    local line = text:sub(offset + 1, newline)
    local summary
    if to_server then
      summary = string.format('EXEC "%s"', quoted(line))
    else
      local mark = line:sub(1, 2)
      if mark == "1 " or mark == "1-" then summary = string.format("STDOUT %d B", #quoted(line) - 2)
      elseif mark == "2 " or mark == "2-" then summary = string.format("STDERR %d B", #quoted(line) - 2)
      elseif mark == "= " then
        local code = line:match("^= exit (%d+)")
        local signal = line:match("^= signal (%d+)")
        if code then summary = "EXIT " .. code
        elseif signal then summary = "EXIT signal " .. signal
        else summary = "EXIT " .. quoted(line:sub(3)) end
        if line:find(" timeout", 1, true) then summary = summary .. " timed out" end
      elseif mark == "! " then summary = "ERROR " .. quoted(line:sub(3))
      else summary = "DATA " .. quoted(line) end
    end
    tree:add(f_text, buffer(offset, newline - offset), quoted(line))
    tree:add(f_summary, buffer(offset, newline - offset), summary)
    -- consecutive output lines of one stream are summed: "STDOUT 400 B in 2 lines"
    local stream, size = summary:match("^(STD%u+) (%d+) B")
    local last = summaries[#summaries]
    local last_stream, last_size, last_lines = (last or ""):match("^(STD%u+) (%d+) B in (%d+) lines")
    if stream and last_stream == stream then
      summaries[#summaries] = string.format("%s %d B in %d lines", stream, last_size + size, last_lines + 1)
    elseif stream then
      summaries[#summaries + 1] = string.format("%s %d B in 1 lines", stream, size)
    else
      summaries[#summaries + 1] = summary
    end
    offset = newline
  end
  for index, summary in ipairs(summaries) do
    summaries[index] = summary:gsub(" in 1 lines$", "")
  end
  return summaries
end

-- ack framing: '<size>\\n', 'ok\\n', then size bytes; raw: whatever one send carried.
local function dissect_text(buffer, tree, to_server, framing)
  local text = buffer():raw()
  local summary
  if framing == "ack" and text == "ok\\n" then summary = "ACK ok (ready for the body)"
  elseif framing == "ack" and text:match("^%d+\\n$") then summary = "ACK size " .. text:match("^(%d+)")
  elseif to_server then summary = string.format('EXEC "%s"', quoted(text))
  else summary = string.format("OUTPUT %d B", #text) end
  tree:add(f_text, buffer(), quoted(text))
  tree:add(f_summary, buffer(), summary)
  return {{ summary }}
end

-- A segmented send (UDP GSO) seen on loopback is one UDP packet holding datagrams of one size back to
-- back (the last may be shorter), each whole with its own header. The size is where the next header
-- begins: the same version and connection id at every multiple of it (the header only: Lua has no CRC-32
-- here; netlab's own analysis checks the checksum too). A payload no size splits is one datagram.
local function segment_size(buffer, length)
  if length < 2 * SEQUENCING_HEADER_SIZE then return length end
  local raw = buffer():raw()
  local version, id = raw:byte(4), raw:sub(5, 12)
  local found = raw:find(id, SEQUENCING_HEADER_SIZE + 5, true)
  while found do
    local size, whole = found - 5, true
    for start = size, length - 1, size do
      if length - start < SEQUENCING_HEADER_SIZE or raw:byte(start + 4) ~= version
          or raw:sub(start + 5, start + 12) ~= id then
        whole = false
        break
      end
    end
    if whole then return size end
    found = raw:find(id, found + 1, true)
  end
  return length
end

function netlab.dissector(buffer, pinfo, tree)
  local length = buffer:len()
  if length == 0 then return 0 end
  -- One packet may hold the end of one reassembled message and another: then this runs twice.
  local again = tostring(pinfo.cols.protocol) == "netlab"
  local subtree = tree:add(netlab, buffer(), "netlab")
  local summaries
  if pinfo.port_type == 3 then  -- UDP: per datagram the sequencing header, then (DATA) a fragment of a message
    summaries = {{}}
    local size = segment_size(buffer, length)
    for start = 0, length - 1, size do
      local datagram = buffer(start, math.min(size, length - start)):tvb()
      local tree_of = size < length and subtree:add(netlab, datagram(), "datagram") or subtree
      local offset, header = dissect_NetlabSequencing(datagram, tree_of, 0, datagram:len())
      local kind = ({{ {datagram_types} }})[header.type] or "type"
      local summary = string.format("UDP %s seq=%s ack=%s", kind, tostring(header.sequence),
                                    tostring(header.acknowledgement))
      summaries[#summaries + 1] = summary
      tree_of:add(f_summary, datagram(0, offset), summary)
      if offset < datagram:len() and FRAMING_BY_NUMBER[netlab.prefs.framing] == "length" then
        local inner = dissect_length_frames(datagram, pinfo, tree_of, offset, false)
        for _, text in ipairs(inner) do summaries[#summaries + 1] = text end
      end
    end
  else
    local to_server = pinfo.dst_port == netlab.prefs.tcp_port
    local framing = FRAMING_BY_NUMBER[netlab.prefs.framing]
    if framing == "length" then
      summaries = dissect_length_frames(buffer, pinfo, subtree, 0, true)
    elseif framing == "line" then
      summaries = dissect_lines(buffer, pinfo, subtree, to_server)
    else
      summaries = dissect_text(buffer, subtree, to_server, framing)
    end
  end
  if #summaries > 0 then
    pinfo.cols.protocol = "netlab"
    if again then
      pinfo.cols.info:append("; " .. table.concat(summaries, "; "))
    else
      pinfo.cols.info = table.concat(summaries, "; ")
    end
  end
  return length
end

local registered_tcp, registered_udp
local function register_ports()
  local tcp_table = DissectorTable.get("tcp.port")
  local udp_table = DissectorTable.get("udp.port")
  if registered_tcp then tcp_table:remove(registered_tcp, netlab) end
  if registered_udp then udp_table:remove(registered_udp, netlab) end
  registered_tcp, registered_udp = netlab.prefs.tcp_port, netlab.prefs.udp_port
  tcp_table:add(registered_tcp, netlab)
  udp_table:add(registered_udp, netlab)
end

function netlab.prefs_changed() register_ports() end
register_ports()
"""

