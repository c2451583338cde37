// Package solution is crmsync's Dataverse solution: the source of the unmanaged
// solution a Dataverse administrator imports, the zip they import, and the parsed
// definitions the rest of crmsync reads so that the solution, the emulator and the
// engine cannot drift apart.
//
// The source lives in src/ exactly as the files lie in the solution zip:
//
//	[Content_Types].xml                  the package's content types (one per extension)
//	solution.xml                         manifest: unique name, version, publisher (prefix cs), root components
//	customizations.xml                   the cs_ columns on list, the cs_subscription table with its lookups
//	                                     and alternate keys, the eMS Campaign channel on campaignactivity,
//	                                     the command-bar buttons (RibbonDiffXml) and the web resource's entry
//	WebResources/cs_emscommands.js       the buttons' JavaScript
//	customapis/<uniquename>/customapi.xml                       cs_SendCampaign, cs_SyncMarketingList
//	customapis/<uniquename>/customapirequestparameters/<name>/customapirequestparameter.xml
//
// Build zips src/ unchanged, in a fixed order with fixed timestamps, so the same
// source always gives the same bytes; Load parses the parts crmsync needs.
//
// The formats follow Microsoft's documentation where it exists ("Create a custom
// API with solution files" gives the customapis/ layout and both custom API files)
// and otherwise what solution exports and SolutionPackager (pac solution unpack)
// produce, as seen in public repositories. Not verified against a live import:
//
//   - customizations.xml lists only the attributes the solution adds or changes, with
//     the platform tables list and campaignactivity marked unmodified="1" and their
//     root components at behavior 2 (only the subcomponents listed); exports have
//     that shape, and each attribute carries the elements exports carry for its
//     type, but which of them an import requires is not documented;
//   - the channel option 100000001 is listed alone in campaignactivity's local
//     channeltypecode choice; an export lists the platform's options too, and an
//     unmanaged import is expected to add the option without removing the others;
//   - the new table cs_subscription lists only its primary key, primary name,
//     statecode, statuscode and its own columns; the platform adds the other system
//     columns and, on creation, a default form and views (FormXml and SavedQueries are
//     empty here);
//   - the web resource keeps its .js name inside the zip (FileName
//     /WebResources/cs_emscommands.js, covered by a Default Extension in
//     [Content_Types].xml); exports name the file <name without dots><GUID> and add an
//     Override per file instead; both shapes appear in working public packages;
//   - the custom APIs have no RootComponent entries (Microsoft's example adds none;
//     their component type number is not documented);
//   - the ribbon locations Mscrm.Form.list.MainTab.Save.Controls._children and
//     Mscrm.Form.campaignactivity.MainTab.Save.Controls._children follow the pattern
//     documented for account; the group names of those two forms were not checked.
package solution
